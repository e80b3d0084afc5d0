"""Tests on one ``make airflow`` deployment (``conftest.py``).

A package, not a plain folder: pytest scopes a ``scope="package"`` fixture to a folder only when it has an
``__init__.py`` (elsewhere it lasts until the session ends), and Airflow must stop when this folder's tests
end.
"""
