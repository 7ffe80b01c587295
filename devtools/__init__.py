"""Development tooling: the chaos trials, the sandbox they run in, `bench` and `loadtest`.

A Django app present in a checkout only: the image does not copy it, so production has
neither these commands nor the code that starts `initdb` and `redis-server`. Settings
install it when it can be imported.
"""
