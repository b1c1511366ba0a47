//! The shared storage contract suite, against PostgreSQL.
