from django.apps import AppConfig


class MeterAppConfig(AppConfig):
    name = "benchmarks.meter_app"
    label = "meter_app"
    default_auto_field = "django.db.models.BigAutoField"
