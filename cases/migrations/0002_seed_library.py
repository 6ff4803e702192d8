"""Seed the library with every grounded case (cases/fixtures), published."""

from django.db import migrations


def seed(apps, schema_editor):
    from cases.seed import shipped_cases

    CaseStudy = apps.get_model("cases", "CaseStudy")
    for values in shipped_cases():
        CaseStudy.objects.update_or_create(slug=values["slug"], defaults=values)


def unseed(apps, schema_editor):
    from cases.seed import shipped_cases

    CaseStudy = apps.get_model("cases", "CaseStudy")
    CaseStudy.objects.filter(slug__in=[case["slug"] for case in shipped_cases()]).delete()


class Migration(migrations.Migration):
    dependencies = [("cases", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
