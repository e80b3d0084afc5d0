"""The server's shared database: feedback, replica and deployment rows."""
