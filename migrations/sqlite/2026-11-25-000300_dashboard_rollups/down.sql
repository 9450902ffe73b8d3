DROP TABLE dashboard_rollups_filled;
DROP TABLE dashboard_notices;
DROP TABLE dashboard_open_delays;
DROP TABLE dashboard_documents;
