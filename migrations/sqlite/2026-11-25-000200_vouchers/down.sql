DROP TABLE voucher_scan_failures;
DROP TABLE vouchers;
DROP TABLE voucher_sites;
DROP TABLE voucher_campaigns;
