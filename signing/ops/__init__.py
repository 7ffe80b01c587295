"""Running the service: worker processes and threads, metrics, health, the login lockout
and the broker's message encoding."""
