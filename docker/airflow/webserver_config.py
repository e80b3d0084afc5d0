"""Flask-AppBuilder settings of the API server's FAB auth manager: sign-in with Airflow's own users (FAB's
default, the users `airflow users create` makes) and CSRF on every form.

Part of the image so that Airflow never writes this file into AIRFLOW_HOME at start: the Kubernetes pods run
on a read-only root filesystem (k8s/airflow-values.yaml). In compose a tmpfs covers AIRFLOW_HOME, and the
auth manager writes its own default, which says the same.
"""

WTF_CSRF_ENABLED = True
WTF_CSRF_TIME_LIMIT = None
