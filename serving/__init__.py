"""The sentiflow model server: Flask app factory (``serving.app:create_app``) run under gunicorn."""
