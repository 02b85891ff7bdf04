#!/bin/sh
# make-certs.sh DIR ENGINE...: the TLS certificates with which the control plane
# reaches the Docker engines of node machines, as Docker's "Protect the Docker
# daemon socket" describes: a CA, one client certificate for the control plane,
# and a server certificate for each engine, named by the host name or IP address
# the control plane dials it at (the one in tcp://ENGINE:2376).
#
#	DIR/ca/ca.pem, ca-key.pem              the CA (keep ca-key.pem off the servers)
#	DIR/client/ca.pem, cert.pem, key.pem   the control plane's: BURLA_DOCKER_TLS_DIR=DIR/client
#	DIR/ENGINE/ca.pem, server-cert.pem, server-key.pem
#	                                       that engine's: copy to /etc/docker/tls on its machine
#
# Run it again with more engines to add them: an existing CA and client
# certificate are kept.
set -eu
if [ $# -lt 2 ]; then
	echo "usage: $0 DIR ENGINE..." >&2
	exit 2
fi
dir=$1
shift
days=3650
mkdir -p "$dir/ca" "$dir/client"
cd "$dir"
umask 077
if [ ! -f ca/ca.pem ]; then
	openssl genrsa -out ca/ca-key.pem 3072 2>/dev/null
	openssl req -new -x509 -days $days -sha256 -key ca/ca-key.pem -subj "/CN=burla docker CA" -out ca/ca.pem
fi
if [ ! -f client/cert.pem ]; then
	openssl genrsa -out client/key.pem 3072 2>/dev/null
	openssl req -new -sha256 -key client/key.pem -subj "/CN=burla control plane" -out client/client.csr
	printf 'extendedKeyUsage = clientAuth\n' >client/ext.cnf
	openssl x509 -req -days $days -sha256 -in client/client.csr -CA ca/ca.pem -CAkey ca/ca-key.pem \
		-CAcreateserial -out client/cert.pem -extfile client/ext.cnf 2>/dev/null
	rm client/client.csr client/ext.cnf
fi
cp ca/ca.pem client/ca.pem
for engine in "$@"; do
	case $engine in
	*[!0-9.]*) san="DNS:$engine" ;; # a name (an IPv6 address needs IP: by hand)
	*) san="IP:$engine" ;;
	esac
	mkdir -p "$engine"
	openssl genrsa -out "$engine/server-key.pem" 3072 2>/dev/null
	openssl req -new -sha256 -key "$engine/server-key.pem" -subj "/CN=$engine" -out "$engine/server.csr"
	printf 'subjectAltName = %s\nextendedKeyUsage = serverAuth\n' "$san" >"$engine/ext.cnf"
	openssl x509 -req -days $days -sha256 -in "$engine/server.csr" -CA ca/ca.pem -CAkey ca/ca-key.pem \
		-CAcreateserial -out "$engine/server-cert.pem" -extfile "$engine/ext.cnf" 2>/dev/null
	rm "$engine/server.csr" "$engine/ext.cnf"
	cp ca/ca.pem "$engine/ca.pem"
	echo "$dir/$engine: copy to /etc/docker/tls on $engine" >&2
done
echo "$dir/client: the control plane's (BURLA_DOCKER_TLS_DIR)" >&2
