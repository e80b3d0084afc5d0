"""Everything Airflow: task bodies, the trigger form and its params, connections, the trainer pod, links.

The only layer that imports Airflow (inside functions, so DAG parsing stays light). The DAG files in
``dags/`` wire these tasks; the logic they call lives in ``gate``, ``release``, ``data``, ``train``.
"""
