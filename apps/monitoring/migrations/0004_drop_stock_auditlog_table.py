# The audit entries live in monitoring.AuditEntry (AUDITLOG_LOGENTRY_MODEL), and django-auditlog's own
# migrations are switched off (MIGRATION_MODULES), because its stock table was never used and its foreign
# keys made TRUNCATE of content types and users fail (test database flushes). This removes that table where
# an earlier migrate had created it; on a new database it never exists.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0003_merge_audit_metrics"),
    ]

    operations = [
        migrations.RunSQL("DROP TABLE IF EXISTS auditlog_logentry", reverse_sql=migrations.RunSQL.noop),
    ]
