"""Settings: the typed ``SENTIFLOW_*`` settings of every component and the README table made from them."""
