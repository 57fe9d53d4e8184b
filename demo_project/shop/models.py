"""The shop: products, baskets (one per customer visit, on a day) and their line items."""

from django.db import models

from stepping_django.capture import StepManager


class Product(models.Model):
    name = models.CharField(max_length=50, unique=True)
    price = models.FloatField()

    objects = StepManager()  # so QuerySet.update and bulk writes reach the views

    def __str__(self) -> str:
        return self.name


class Basket(models.Model):
    customer = models.CharField(max_length=50)
    day = models.DateField()

    objects = StepManager()

    def __str__(self) -> str:
        return f"{self.customer} on {self.day}"


class LineItem(models.Model):
    basket = models.ForeignKey(Basket, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    qty = models.IntegerField()

    objects = StepManager()
