"""The server's shared database: feedback and replica rows."""
