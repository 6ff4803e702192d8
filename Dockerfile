FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_STATIC_ROOT=/app/staticfiles

WORKDIR /app
RUN useradd --create-home --uid 10001 hls

COPY requirements/base.lock requirements/base.lock
RUN pip install --no-cache-dir -r requirements/base.lock

COPY . .
# Static files and translations are built into the image; the values here exist only so
# settings load during the build, and are never used at run time.
RUN DJANGO_DEBUG=false \
    DJANGO_SECRET_KEY=build-time-only-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH \
    DJANGO_ALLOWED_HOSTS=build \
    DATABASE_URL=postgresql://build@build/build \
    REDIS_URL=redis://build:6379/0 \
    sh -c "python manage.py collectstatic --noinput && python manage.py compiletranslations"

# Export files: a volume shared by the web server (downloads) and the worker (writes them).
RUN mkdir -p /app/exports && chown hls /app/exports
USER hls
EXPOSE 8000
CMD ["gunicorn", "hls.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-", "--logger-class", "hls.lib.gunicorn_logger.RedactingLogger"]
