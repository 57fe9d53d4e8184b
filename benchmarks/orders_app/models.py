"""The orders of benchmarks/django_parallel_apply.py."""

from django.db import models

from stepping_django.capture import StepManager


class Order(models.Model):
    customer = models.IntegerField()
    amount = models.IntegerField()

    objects = StepManager()
