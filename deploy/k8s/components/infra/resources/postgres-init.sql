-- One database per service: each owns its schema and migrations (database-per-service).
CREATE DATABASE shanhai_user;
CREATE DATABASE shanhai_order;
CREATE DATABASE shanhai_payment;
