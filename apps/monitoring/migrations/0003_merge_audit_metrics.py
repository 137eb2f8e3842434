# The audit log and the metrics tables were built side by side from 0001; this joins the two branches.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0002_audit"),
        ("monitoring", "0002_metrics_alerts"),
    ]

    operations = []
