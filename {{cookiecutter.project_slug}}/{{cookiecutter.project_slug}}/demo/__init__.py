"""Endpoints with a known cost, for load-testing the gunicorn worker models.

They are routed only when settings.DEMO_ENDPOINTS is true (DJANGO_DEMO_ENDPOINTS):
each lets any caller make the server wait or burn CPU.
"""
