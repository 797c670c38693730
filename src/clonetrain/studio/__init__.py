"""The studio's web page: upload a host's takes and consent, see the verdicts, train, look, promote, render.

    python -m clonetrain.studio --config studio.yaml              # serves http://127.0.0.1:8600/
    python -m clonetrain.studio add-user anna --roles upload,approve,render --config studio.yaml

It sits on the pipeline's own data root, registry, consent records and verdicts: uploads land in raw/<clone>/,
the consent form writes raw/<clone>/consent.yaml, every long job is `python -m clonetrain ...` in a subprocess,
and the page reads what those write (stage manifests, logs, takes.json, metrics.json, registry.db). What the studio
itself keeps (users' audit log, job records, uploads in flight) lives under <root>/studio/.
"""
