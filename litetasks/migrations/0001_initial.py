# The console's permissions (litetasks/models.py): a model without a table.

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    # Tuples: Django copies both into lists (Migration.__init__).
    dependencies = ()

    operations = (
        migrations.CreateModel(
            name="Task",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
            ],
            options={
                "verbose_name": "task",
                "verbose_name_plural": "tasks",
                "permissions": (
                    ("act_on_task", "Can retry and cancel tasks and run schedules now"),
                ),
                "managed": False,
                "default_permissions": ("view", "delete"),
            },
        ),
    )
