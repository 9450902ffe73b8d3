DROP TABLE bulk_job_lines;
DROP TABLE bulk_jobs;
