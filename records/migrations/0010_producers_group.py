"""The `producers` group: its members may add records (POST /api/records/, issue 18).

The group is given the model permission `records.add_record`, and the API checks that
permission (signing.api.views.CanIngestRecords), so an administrator may also grant
it to another group or one user. The permission is made here if post_migrate has not made
it yet (a fresh database runs every migration before post_migrate creates permissions);
post_migrate then finds it and leaves it be.

Reversing leaves the group and its members: undoing a migration deletes no data nobody
asked to delete.
"""

from django.db import migrations

GROUP = "producers"


def create_producers_group(apps, schema_editor) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    db = schema_editor.connection.alias
    record_type, _ = ContentType.objects.using(db).get_or_create(app_label="records", model="record")
    add_record, _ = Permission.objects.using(db).get_or_create(
        content_type=record_type, codename="add_record", defaults={"name": "Can add record"}
    )
    producers, _ = Group.objects.using(db).get_or_create(name=GROUP)
    producers.permissions.add(add_record)


class Migration(migrations.Migration):
    dependencies = [
        ("records", "0009_signature_in_batch_v2"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_producers_group, migrations.RunPython.noop)]
