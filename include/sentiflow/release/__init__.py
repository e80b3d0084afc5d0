"""The release after the gate, free of Airflow: promote, deploy (wait for every replica), check, report.

Any failure rolls the aliases back through ``sentiflow.registry``; the Airflow tasks in
``sentiflow.orchestration.release_tasks`` are thin wrappers around ``flow``.
"""
