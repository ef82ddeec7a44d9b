"""userstats' public Python surface: a typed async client for other services.

from userstats.client import UserstatsClient
"""
