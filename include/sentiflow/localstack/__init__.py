"""The local stack: real services on 127.0.0.1 without Docker, the Airflow standalone and ``make demo``."""
