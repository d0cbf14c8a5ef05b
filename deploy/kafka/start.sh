#!/bin/sh
# Starts the apache/kafka image's broker (its own command, given as the arguments) with a cluster id of this
# deployment's own, for docker compose and the kind cluster alike.
#
# The image formats an empty data directory with $CLUSTER_ID and, when that is unset, with one default id that is
# the same in every image (5L6g3nShT-eMCtK--X86sw). An emptied Kafka volume then came back as the same cluster with
# offsets from 0 again, and the bridge's Pulsar producers, which are named by the Kafka cluster id and send offsets
# as sequence ids, had Pulsar's deduplication drop the new records as replays (bridge/README.md). A fixed id of our
# own would do the same, so each empty directory gets a random one, and a formatted one keeps the id it holds in
# meta.properties (the broker reads it from there; the image's format step skips a formatted directory).
set -eu

dir=${KAFKA_LOG_DIRS:?KAFKA_LOG_DIRS must name the data volume}
meta=${dir%%,*}/meta.properties

if [ -f "$meta" ]; then
	CLUSTER_ID=$(sed -n 's/^cluster\.id=//p' "$meta")
	how="kept from $meta"
else
	CLUSTER_ID=$("${KAFKA_HOME:-/opt/kafka}/bin/kafka-storage.sh" random-uuid)
	how="new: no $meta yet"
fi

# A Kafka Uuid is 16 bytes in unpadded base64url: 22 characters. Anything else (an empty answer, a warning on stdout)
# must stop the start, not leave CLUSTER_ID for the image to default.
case $CLUSTER_ID in
*[!A-Za-z0-9_-]*) ok=false ;;
*) [ ${#CLUSTER_ID} -eq 22 ] && ok=true || ok=false ;;
esac
if [ "$ok" != true ]; then
	echo "kafka start: cluster id \"$CLUSTER_ID\" ($how) is not a Kafka Uuid; not starting" >&2
	exit 1
fi

echo "kafka start: cluster id $CLUSTER_ID ($how)"
export CLUSTER_ID
exec "$@"
