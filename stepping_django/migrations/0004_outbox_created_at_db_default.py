from django.db import migrations, models
from django.db.models.functions import Now
from django.utils import timezone


class Migration(migrations.Migration):
    """Outbox.created_at gets a database default, so capture's INSERT can omit it."""

    dependencies = [
        ("stepping_django", "0003_pipeline_batch"),
    ]

    operations = [
        migrations.AlterField(
            model_name="outbox",
            name="created_at",
            field=models.DateTimeField(db_default=Now(), default=timezone.now),
        ),
    ]
