"""The meter-reads workload (benchmarks/meter_reads.py) as Django models."""

from django.db import models

from stepping_django.capture import StepManager


class Customer(models.Model):
    id = models.IntegerField(primary_key=True)

    objects = StepManager()


class Meter(models.Model):
    meter_id = models.UUIDField(primary_key=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)

    objects = StepManager()


class Read(models.Model):
    meter = models.ForeignKey(Meter, on_delete=models.CASCADE)
    timestamp = models.DateTimeField()
    value = models.FloatField()

    objects = StepManager()
