DROP TABLE voucher_scan_requests;
