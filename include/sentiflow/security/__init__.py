"""Security: signed models and approvals, credentials checks, MLflow and object-store identities."""
