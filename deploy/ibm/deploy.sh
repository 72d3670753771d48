#!/usr/bin/env bash
# Deploy logferry as an IBM Code Engine job triggered by writes to a COS bucket.
#
#   PROJECT=logs COS_INSTANCE=my-cos COS_BUCKET=flowlogs COS_REGION=us-south \
#   LOGDNA_REGION=us-south deploy/ibm/deploy.sh
#
# Run from the repository root, logged in (ibmcloud login; ibmcloud target -r REGION -g GROUP).
# Secrets come from deploy/ibm/secrets.env (see secrets.env.example), never from the command line.
# Re-running updates what exists. Set IMAGE to deploy a prebuilt image instead of building here.
set -euo pipefail

: "${PROJECT:?name of the Code Engine project}"
: "${COS_INSTANCE:?name of the Cloud Object Storage instance}"
: "${COS_BUCKET:?the bucket to ship}"
: "${COS_REGION:?the bucket region, e.g. us-south}"
JOB=${JOB:-logferry}
COS_PREFIX=${COS_PREFIX:-}
COS_ENDPOINT=${COS_ENDPOINT:-https://s3.direct.${COS_REGION}.cloud-object-storage.appdomain.cloud}
LOGDNA_REGION=${LOGDNA_REGION:-}
LOGFERRY_SINKS=${LOGFERRY_SINKS:-}
LOGFERRY_FORMAT=${LOGFERRY_FORMAT:-auto}
SECRETS_FILE=${SECRETS_FILE:-deploy/ibm/secrets.env}
IMAGE=${IMAGE:-}
REGISTRY_SECRET=${REGISTRY_SECRET:-}

if [[ -z "$LOGDNA_REGION" && -z "$LOGFERRY_SINKS" ]]; then
  echo "set LOGDNA_REGION or LOGFERRY_SINKS" >&2
  exit 2
fi
if [[ ! -f "$SECRETS_FILE" ]]; then
  echo "missing $SECRETS_FILE: copy deploy/ibm/secrets.env.example and fill it in" >&2
  exit 2
fi

ibmcloud ce project select --name "$PROJECT"

# Non-secret settings: a config map. `update` when it exists, so re-runs converge.
config=(--from-literal "COS_ENDPOINT=$COS_ENDPOINT" --from-literal "COS_BUCKET=$COS_BUCKET"
        --from-literal "COS_PREFIX=$COS_PREFIX" --from-literal "LOGFERRY_FORMAT=$LOGFERRY_FORMAT")
[[ -n "$LOGDNA_REGION" ]] && config+=(--from-literal "LOGDNA_REGION=$LOGDNA_REGION")
[[ -n "$LOGFERRY_SINKS" ]] && config+=(--from-literal "LOGFERRY_SINKS=$LOGFERRY_SINKS")
if ibmcloud ce configmap get --name "$JOB-config" >/dev/null 2>&1; then
  ibmcloud ce configmap update --name "$JOB-config" "${config[@]}"
else
  ibmcloud ce configmap create --name "$JOB-config" "${config[@]}"
fi

# Secrets: the ingestion key, HMAC keys, the ledger URL.
if ibmcloud ce secret get --name "$JOB-secrets" >/dev/null 2>&1; then
  ibmcloud ce secret update --name "$JOB-secrets" --from-env-file "$SECRETS_FILE"
else
  ibmcloud ce secret create --name "$JOB-secrets" --from-env-file "$SECRETS_FILE"
fi

# The job. Without IMAGE, Code Engine builds deploy/ibm/Dockerfile from this directory and
# pushes the image to IBM Cloud Container Registry.
if [[ -n "$IMAGE" ]]; then
  image=(--image "$IMAGE")
  [[ -n "$REGISTRY_SECRET" ]] && image+=(--registry-secret "$REGISTRY_SECRET")
else
  image=(--build-source . --build-dockerfile deploy/ibm/Dockerfile)
fi
job=(--env-from-configmap "$JOB-config" --env-from-secret "$JOB-secrets"
     --cpu 1 --memory 4G --maxexecutiontime 3600 --retrylimit 3)
if ibmcloud ce job get --name "$JOB" >/dev/null 2>&1; then
  ibmcloud ce job update --name "$JOB" "${image[@]}" "${job[@]}"
else
  ibmcloud ce job create --name "$JOB" "${image[@]}" "${job[@]}"
fi

# Code Engine may receive the bucket's events: a one-time IAM authorization.
ibmcloud iam authorization-policy-create codeengine cloud-object-storage "Notifications Manager" \
  --source-service-instance-name "$PROJECT" --target-service-instance-name "$COS_INSTANCE" \
  2>/dev/null || echo "(authorization policy exists already, or ask an account admin to create it)"

# Every object written to the bucket starts one job run with the event in CE_DATA.
sub=(--destination "$JOB" --destination-type job --bucket "$COS_BUCKET" --event-type write)
[[ -n "$COS_PREFIX" ]] && sub+=(--prefix "$COS_PREFIX")
if ! ibmcloud ce subscription cos get --name "$JOB-cos" >/dev/null 2>&1; then
  ibmcloud ce subscription cos create --name "$JOB-cos" "${sub[@]}"
fi

cat <<DONE
Deployed. Catch up the objects already in the bucket with an array job, each index shipping its
own share of the keys (JOB_INDEX of JOB_ARRAY_SIZE) into the same ledger:

  ibmcloud ce jobrun submit --job $JOB --name $JOB-catchup --array-indices 0-9

Follow a run with: ibmcloud ce jobrun logs --name $JOB-catchup --follow
DONE
