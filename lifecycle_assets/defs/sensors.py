"""Event-based automation: ingest each day a newly landed file carries."""

import json

import dagster as dg

from lifecycle_assets.data.landing import days_in_file, landed_files, landing_folder
from lifecycle_assets.defs.jobs import ingest_job_name
from lifecycle_assets.spec import ModelSpec


def build_sensors(spec: ModelSpec, jobs: list) -> list[dg.SensorDefinition]:
    ingest = {job.name: job for job in jobs}[ingest_job_name(spec)]

    @dg.sensor(
        name=f"{spec.name}_new_data_sensor",
        job=ingest,
        minimum_interval_seconds=60,
        description=f"Ingests the days carried by each new or changed file in {spec.name}'s "
        "landing folder.",
    )
    def new_data_sensor(context: dg.SensorEvaluationContext):
        folder = landing_folder(spec)
        if folder is None:
            return dg.SkipReason(
                f"source {spec.source.uri} is not a local landing folder; "
                "ingestion follows the daily schedule"
            )
        seen: dict[str, str] = json.loads(context.cursor or "{}")
        files = landed_files(spec, folder)
        fresh = [f for f in files if seen.get(f.path.name) != f.fingerprint]
        if not fresh:
            return dg.SkipReason(f"no new or changed file among {len(files)} in {folder}")
        valid = set(ingest.partitions_def.get_partition_keys())
        requests, outside = [], []
        for landed in fresh:
            for day in days_in_file(spec, landed.path):
                if day in valid:
                    # Keyed by content: the same file never triggers the same day twice.
                    requests.append(
                        dg.RunRequest(
                            run_key=f"{day}:{landed.fingerprint}",
                            partition_key=day,
                            tags={"lifecycle/landed_file": landed.path.name},
                        )
                    )
                else:
                    outside.append(day)
            seen[landed.path.name] = landed.fingerprint
        if outside:
            context.log.warning(f"days outside the partitions, not ingested: {sorted(outside)}")
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))

    return [new_data_sensor]
