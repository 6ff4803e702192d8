import uuid

from django.db import migrations, models


def fill_public_ids(apps, schema_editor):
    Membership = apps.get_model("engagements", "Membership")
    for membership in Membership.objects.filter(public_id__isnull=True).only("pk"):
        membership.public_id = uuid.uuid4()
        membership.save(update_fields=["public_id"])


class Migration(migrations.Migration):
    dependencies = [("engagements", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="membership",
            name="public_id",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(fill_public_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="membership",
            name="public_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
    ]
