"""WSGI entry point (gunicorn signing_site.wsgi:application; runserver loads it too).

Loading it refuses to serve with DEBUG off and the development SECRET_KEY or open
ALLOWED_HOSTS, unless runserver or `manage.py serve` is bound to a loopback address
(kernel.safety says why there and only there).
"""

import os
import sys

from django.core.wsgi import get_wsgi_application

from kernel.safety import development_server_address, refuse_unsafe_serving

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signing_site.settings")
application = get_wsgi_application()

refuse_unsafe_serving(address=development_server_address(sys.argv))
