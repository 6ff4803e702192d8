from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class HlsConfig(AppConfig):
    name = "hls"
    verbose_name = "HLS Learning Partner"


class HLSAdminConfig(AdminConfig):
    default_site = "hls.admin.HLSAdminSite"
