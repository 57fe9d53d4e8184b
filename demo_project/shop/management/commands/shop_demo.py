"""`manage.py shop_demo`: load a small shop, change some rows, and print the incremental
views before and after, read through ordinary querysets."""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.db.models import F, Sum

import stepping_django
from demo_project.shop.incremental import basket_totals, product_day_revenue, top_products
from demo_project.shop.models import Basket, LineItem, Product
from stepping_django.maintenance import status

DAY1, DAY2, DAY3 = (datetime.date(2026, 11, d) for d in (23, 24, 25))

PRICES = {
    "laptop": 900.0, "phone": 600.0, "camera": 450.0, "tablet": 350.0, "tv": 300.0,
    "watch": 200.0, "speaker": 120.0, "headphones": 80.0, "radio": 50.0, "mouse": 25.0,
    "charger": 20.0, "cable": 10.0,
}  # fmt: skip

BASKETS = [
    ("ann", DAY1, {"laptop": 1, "mouse": 1, "cable": 2}),
    ("bob", DAY1, {"tv": 2, "radio": 1}),
    ("cy", DAY2, {"phone": 1, "charger": 2, "headphones": 1}),
    ("dee", DAY2, {"camera": 1, "tv": 1}),
    ("eve", DAY3, {"tablet": 1, "speaker": 2, "watch": 1}),
]


class Command(BaseCommand):
    help = "Demo of incremental views: load a shop, change it, print the views."

    def handle(self, *args: Any, **options: Any) -> None:
        self.reset_and_load()
        before = self.snapshot()
        self.section("The views after loading the shop")
        self.show(before)

        self.section("Changes")
        self.change()

        self.section("The views after the changes (+ new or changed line, - gone)")
        self.show(self.snapshot(), before)

        self.section("Check")
        fresh = all(
            v.maintained() == v.from_scratch()
            for v in (basket_totals, product_day_revenue, top_products)
        )
        pending = sum(s.pending for s in status())
        revenue = basket_totals.objects.aggregate(revenue=Sum("total"))["revenue"]
        self.stdout.write(f"basket_totals.objects.aggregate(Sum('total')): {revenue:,.2f}")
        self.stdout.write(
            f"every view equals a from-scratch computation over the tables: {fresh}; "
            f"pending changes: {pending}"
        )

    # -- data ---------------------------------------------------------------------------

    def reset_and_load(self) -> None:
        with transaction.atomic():  # the views are applied once, when this commits
            LineItem.objects.all().delete()
            Basket.objects.all().delete()
            Product.objects.all().delete()
            products = {
                p.name: p
                for p in Product.objects.bulk_create(
                    [Product(name=n, price=price) for n, price in PRICES.items()]
                )
            }
            for customer, day, items in BASKETS:
                basket = Basket.objects.create(customer=customer, day=day)
                LineItem.objects.bulk_create(
                    [LineItem(basket=basket, product=products[n], qty=q) for n, q in items.items()]
                )

    def change(self) -> None:
        tv = Product.objects.get(name="tv")
        tv.price = 250.0
        tv.save()
        self.stdout.write("save():            the tv costs 250.00 instead of 300.00")

        Product.objects.filter(name__in=["cable", "charger"]).update(price=F("price") * 2)
        self.stdout.write("QuerySet.update(): cables and chargers cost twice as much")

        Basket.objects.filter(customer="bob").delete()
        self.stdout.write("QuerySet.delete(): bob's basket is deleted (with its line items)")

        with transaction.atomic():
            fay = Basket.objects.create(customer="fay", day=DAY3)
            LineItem.objects.bulk_create(
                [
                    LineItem(basket=fay, product=Product.objects.get(name="mouse"), qty=4),
                    LineItem(basket=fay, product=Product.objects.get(name="headphones"), qty=1),
                ]
            )
        self.stdout.write("bulk_create():     fay buys 4 mice and headphones on 2026-11-25")

        with transaction.atomic():
            eve_items = LineItem.objects.filter(basket__customer="eve", product__name="speaker")
            pks = list(eve_items.values_list("pk", flat=True))
            with connection.cursor() as cursor:
                cursor.execute("UPDATE shop_lineitem SET qty = qty + 1 WHERE id = %s", pks)
            stepping_django.notify(LineItem, pks)
        self.stdout.write("raw SQL + notify(): eve takes a third speaker")

    # -- reading the views through querysets ----------------------------------------------

    def snapshot(self) -> dict[str, list[str]]:
        customers = dict(Basket.objects.values_list("id", "customer"))
        totals = basket_totals.objects.order_by("-total")
        by_day = product_day_revenue.objects.order_by("day", "-revenue", "product")
        top = top_products.objects.order_by("-revenue", "product")
        return {
            "basket_totals  (basket_totals.objects.order_by('-total'))": [
                f"{customers.get(t.basket_id, '?'):<5} {t.total:>9,.2f}" for t in totals
            ],
            "product_day_revenue  (.filter(revenue__gte=100).order_by('day', '-revenue'))": [
                f"{r.day}  {r.product:<10} {r.revenue:>9,.2f}"
                for r in by_day.filter(revenue__gte=100)
            ],
            "top_products  (top 10 by revenue, .order_by('-revenue'))": [
                f"{r.product:<10} {r.revenue:>9,.2f}" for r in top
            ],
        }

    def show(self, views: dict[str, list[str]], before: dict[str, list[str]] | None = None) -> None:
        for title, lines in views.items():
            self.stdout.write(f"\n{title}")
            old = set(before[title]) if before else set(lines)
            for line in lines:
                self.stdout.write(f"  {'+' if line not in old else ' '} {line}")
            for line in before[title] if before else []:
                if line not in lines:
                    self.stdout.write(f"  - {line}")

    def section(self, title: str) -> None:
        self.stdout.write(f"\n=== {title} ===")
