"""sentiflow: keep a sentiment classifier trained, tracked, chosen and served with Airflow and MLflow."""

__version__ = "0.1.0"
