# Image for the docker-compose stack: the official Airflow image plus this provider.
# Airflow stays pinned to the image's own version so pip never upgrades or downgrades it.
# Extras: `events` (the Redis and common-messaging providers of the sign-up Asset watcher), `metrics`
# (StatsD), `openlineage` (the lineage listener), `s3` (CLEAROUT_PROVIDER_DATA_DIR=s3://<conn>@bucket/...).
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root pyproject.toml README.md /opt/clearout-provider/
COPY --chown=airflow:root plugins/clearout_provider /opt/clearout-provider/plugins/clearout_provider
RUN pip install --no-cache-dir "apache-airflow==3.3.2" "/opt/clearout-provider[events,metrics,openlineage,s3]"

# The mount point of the compose stack's shared `clearout-data` volume. Docker fills a fresh named volume
# from the image, ownership included: without this folder the volume would start root-owned 755 and the
# sandbox (uid AIRFLOW_UID, gid 0) could not create its state folder. Created as airflow (uid 50000,
# group root) and group-writable, like the rest of /opt/airflow, for any uid run with gid 0.
RUN mkdir -p /opt/airflow/data && chmod 0775 /opt/airflow/data
