# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
APT_PACKAGES = tshark tcpdump redis-server redis-tools curl iproute2 openssl

.PHONY: demo test system-packages

demo:
	$(PYTHON) -m pip install --quiet .
	vxlaninspect scan samples/swarm-plaintext/capture.pcap --docker samples/swarm-plaintext

# tshark is Wireshark's oracle; tcpdump, redis-server, curl and iproute2 run the namespace lab;
# openssl makes the TLS tests' certificate.
system-packages:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES)

test: system-packages
	$(PYTHON) -m pip install --quiet -e '.[test]'
	$(PYTHON) -m pytest
