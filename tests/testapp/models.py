"""Models of the test app: a small shop, plus models for the checks' bad cases."""

from django.db import models

from stepping_django.capture import StepManager


class Product(models.Model):
    name = models.CharField(max_length=50)
    price = models.IntegerField()  # whole units: sums stay exact, so views compare exactly
    added_on = models.DateField(null=True)

    objects = StepManager()


class Basket(models.Model):
    customer = models.CharField(max_length=50)

    objects = StepManager()


class LineItem(models.Model):
    basket = models.ForeignKey(Basket, on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    qty = models.IntegerField()

    objects = StepManager()


class PlainNote(models.Model):
    """A model with Django's default manager (QuerySet.update is not captured)."""

    text = models.TextField()


class Settings(models.Model):
    """A model with a field that cannot be part of a row."""

    options = models.JSONField(default=dict)


class ProductProxy(Product):
    """A proxy: its signals name the proxy class, its rows are Product rows."""

    class Meta:
        proxy = True


class Review(models.Model):
    """Points to a product with SET_NULL: deleting the product updates reviews with no
    signal (capture.py catches it on the product's pre_delete)."""

    product = models.ForeignKey(Product, on_delete=models.SET_NULL, null=True)
    stars = models.IntegerField()

    objects = StepManager()
