// SPDX-License-Identifier: (MPL-2.0 OR GPL-2.0)
//
// noded's port mapping: `host_ip:host_port` -> `alloc_ip:alloc_port`, TCP and UDP.
//
// Two paths, because a packet from another host and a socket on this host meet the stack at
// different places:
// - other hosts: tc ingress on the node's external interfaces rewrites the destination
//   before routing and netfilter see the packet (a DNAT conntrack never knows about, so the
//   allocation's masquerade rule leaves the flow alone and the task sees the client's own
//   address); tc egress on the same interfaces rewrites the replies' source back.
// - this host: a local client's packets never cross an ingress hook of an external
//   interface, so `cgroup/connect4` and `cgroup/sendmsg4` rewrite the destination the socket
//   asked for, and `cgroup/recvmsg4` shows UDP replies as coming from the address the client
//   sent to. These are attached to the cgroup2 root, so they see every socket of the machine:
//   they act only for sockets of the agent's network namespace (`target_netns_cookie`).
//
// Byte order: every address and port in the maps is in network byte order, exactly as it
// sits in the packet and in `struct bpf_sock_addr` (`user_ip4`, the low 16 bits of
// `user_port`). `proto` is the IP protocol number (6 TCP, 17 UDP). Padding is always zero,
// so that userspace and the programs hash the same bytes. The Rust mirror of these structs is
// `ebpf/src/maps.rs`; keep both in step.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_HLEN 14
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define TC_ACT_OK 0

#define PORTMAP_MAX_ENTRIES 65536
#define UDP_ORIG_MAX_ENTRIES 65536

// Key of `portmap`: (proto, host_port). 4 bytes.
struct pm_key {
	__u8 proto;
	__u8 pad;
	__be16 host_port;
};

// Value of `portmap`. 12 bytes.
struct pm_val {
	__be32 host_ip;
	__be32 alloc_ip;
	__be16 alloc_port;
	__u16 pad;
};

// Key of `portmap_rev`: (alloc_ip, alloc_port, proto). 8 bytes.
struct rev_key {
	__be32 alloc_ip;
	__be16 alloc_port;
	__u8 proto;
	__u8 pad;
};

// Value of `portmap_rev`. 8 bytes.
struct rev_val {
	__be32 host_ip;
	__be16 host_port;
	__u16 pad;
};

// Key of `udp_orig`: a UDP socket and the allocation endpoint it was redirected to. 16 bytes.
struct orig_key {
	__u64 sock_cookie;
	__be32 alloc_ip;
	__be16 alloc_port;
	__u16 pad;
};

// Value of `udp_orig`: the destination the socket asked for (127.0.0.1 or host_ip). 8 bytes.
struct orig_val {
	__be32 ip;
	__be16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PORTMAP_MAX_ENTRIES);
	__type(key, struct pm_key);
	__type(value, struct pm_val);
} portmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PORTMAP_MAX_ENTRIES);
	__type(key, struct rev_key);
	__type(value, struct rev_val);
} portmap_rev SEC(".maps");

// Written by sendmsg4/connect4 for UDP, read by recvmsg4: a reply to a client that sent to
// 127.0.0.1 must come "from" 127.0.0.1 (resolvers and most UDP clients drop anything else).
// LRU: sockets close without telling us, the oldest entries make room.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, UDP_ORIG_MAX_ENTRIES);
	__type(key, struct orig_key);
	__type(value, struct orig_val);
} udp_orig SEC(".maps");

// The network namespace cookie of the agent that loaded this object, set before load.
// The cgroup programs see sockets of every namespace on the machine; several agents may run
// on one machine (one per test namespace), each with its own object.
const volatile __u64 target_netns_cookie = 0;

static __always_inline int ours(void *ctx)
{
	return target_netns_cookie != 0 && bpf_get_netns_cookie(ctx) == target_netns_cookie;
}

// The mapping for a socket's destination, or NULL. `ip` and `port` are network byte order.
static __always_inline struct pm_val *sock_lookup(__u32 protocol, __be32 ip, __be16 port)
{
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP)
		return NULL;
	struct pm_key key = { .proto = (__u8)protocol, .pad = 0, .host_port = port };
	struct pm_val *val = bpf_map_lookup_elem(&portmap, &key);
	if (!val)
		return NULL;
	if (ip != bpf_htonl(0x7f000001) /* 127.0.0.1 */ && ip != val->host_ip)
		return NULL;
	return val;
}

static __always_inline void sock_rewrite(struct bpf_sock_addr *ctx)
{
	if (ctx->user_family != 2 /* AF_INET */ || !ours(ctx))
		return;
	__be32 ip = ctx->user_ip4;
	__be16 port = (__be16)ctx->user_port;
	struct pm_val *val = sock_lookup(ctx->protocol, ip, port);
	if (!val)
		return;
	if (ctx->protocol == IPPROTO_UDP) {
		struct orig_key ok = {
			.sock_cookie = bpf_get_socket_cookie(ctx),
			.alloc_ip = val->alloc_ip,
			.alloc_port = val->alloc_port,
			.pad = 0,
		};
		struct orig_val ov = { .ip = ip, .port = port, .pad = 0 };
		bpf_map_update_elem(&udp_orig, &ok, &ov, BPF_ANY);
	}
	ctx->user_ip4 = val->alloc_ip;
	ctx->user_port = (__u32)val->alloc_port;
}

SEC("cgroup/connect4")
int noded_connect4(struct bpf_sock_addr *ctx)
{
	sock_rewrite(ctx);
	return 1; // allow: this program translates, it never refuses
}

SEC("cgroup/sendmsg4")
int noded_sendmsg4(struct bpf_sock_addr *ctx)
{
	sock_rewrite(ctx);
	return 1;
}

// `user_ip4`/`user_port` hold the source of the datagram being received.
SEC("cgroup/recvmsg4")
int noded_recvmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->user_family != 2 || !ours(ctx))
		return 1;
	struct orig_key ok = {
		.sock_cookie = bpf_get_socket_cookie(ctx),
		.alloc_ip = ctx->user_ip4,
		.alloc_port = (__be16)ctx->user_port,
		.pad = 0,
	};
	struct orig_val *ov = bpf_map_lookup_elem(&udp_orig, &ok);
	if (ov) {
		ctx->user_ip4 = ov->ip;
		ctx->user_port = (__u32)ov->port;
		return 1;
	}
	struct rev_key rk = {
		.alloc_ip = ok.alloc_ip, .alloc_port = ok.alloc_port, .proto = IPPROTO_UDP, .pad = 0
	};
	struct rev_val *rv = bpf_map_lookup_elem(&portmap_rev, &rk);
	if (rv) {
		ctx->user_ip4 = rv->host_ip;
		ctx->user_port = (__u32)rv->host_port;
	}
	return 1;
}

// The offsets of a plain (unfragmented) IPv4 TCP/UDP packet on an Ethernet device, with the
// fields the tc programs rewrite. Returns 0 when the packet is not one to translate.
struct l4_loc {
	__u32 ip_off;   // start of the IPv4 header
	__u32 l4_off;   // start of the TCP/UDP header
	__u32 csum_off; // the TCP/UDP checksum field
	__u8 proto;
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__be16 udp_csum; // the UDP checksum as found (0 = none); unused for TCP
};

static __always_inline int parse(struct __sk_buff *skb, struct l4_loc *loc)
{
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	// Headers are read with bpf_skb_load_bytes: it works whether or not they sit in the
	// linear part of the skb, and the verifier needs no packet-pointer bounds.
	struct iphdr ip;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return 0;
	if (ip.version != 4 || ip.ihl < 5)
		return 0;
	// Fragments are left alone: only the first carries the ports, and translating it alone
	// would split one datagram across two destinations.
	if (ip.frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return 0;
	if (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP)
		return 0;
	loc->ip_off = ETH_HLEN;
	loc->l4_off = ETH_HLEN + ip.ihl * 4;
	loc->proto = ip.protocol;
	loc->saddr = ip.saddr;
	loc->daddr = ip.daddr;
	__be16 ports[2];
	if (bpf_skb_load_bytes(skb, loc->l4_off, ports, sizeof(ports)) < 0)
		return 0;
	loc->sport = ports[0];
	loc->dport = ports[1];
	if (ip.protocol == IPPROTO_TCP) {
		loc->csum_off = loc->l4_off + offsetof(struct tcphdr, check);
		loc->udp_csum = 0;
	} else {
		loc->csum_off = loc->l4_off + offsetof(struct udphdr, check);
		if (bpf_skb_load_bytes(skb, loc->csum_off, &loc->udp_csum, 2) < 0)
			return 0;
	}
	return 1;
}

// Rewrites one address (at `addr_off` in the IP header) and one port (at `port_off` in the
// L4 header), fixing the IP header checksum and the TCP/UDP checksum incrementally. A UDP
// datagram without a checksum (0) keeps none: BPF_F_MARK_MANGLED_0 leaves a 0 alone and turns
// a computed 0 into 0xffff.
static __always_inline int rewrite(struct __sk_buff *skb, const struct l4_loc *loc,
				   __u32 addr_off, __be32 old_ip, __be32 new_ip, __u32 port_off,
				   __be16 old_port, __be16 new_port)
{
	__u64 l4_flags = loc->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	int skip_l4 = loc->proto == IPPROTO_UDP && loc->udp_csum == 0;

	if (!skip_l4) {
		if (bpf_l4_csum_replace(skb, loc->csum_off, old_ip, new_ip,
					l4_flags | BPF_F_PSEUDO_HDR | sizeof(new_ip)) < 0)
			return -1;
		if (bpf_l4_csum_replace(skb, loc->csum_off, old_port, new_port,
					l4_flags | sizeof(new_port)) < 0)
			return -1;
	}
	if (bpf_l3_csum_replace(skb, loc->ip_off + offsetof(struct iphdr, check), old_ip, new_ip,
				sizeof(new_ip)) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, loc->ip_off + addr_off, &new_ip, sizeof(new_ip), 0) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, loc->l4_off + port_off, &new_port, sizeof(new_port), 0) < 0)
		return -1;
	return 0;
}

// Other hosts -> allocation: destination host_ip:host_port becomes alloc_ip:alloc_port.
SEC("tc")
int noded_tc_ingress(struct __sk_buff *skb)
{
	struct l4_loc loc;
	if (!parse(skb, &loc))
		return TC_ACT_OK;
	struct pm_key key = { .proto = loc.proto, .pad = 0, .host_port = loc.dport };
	struct pm_val *val = bpf_map_lookup_elem(&portmap, &key);
	if (!val || val->host_ip != loc.daddr)
		return TC_ACT_OK;
	__be32 alloc_ip = val->alloc_ip;
	__be16 alloc_port = val->alloc_port;
	// A failed rewrite leaves a half-translated packet with wrong checksums: the stack drops
	// it, as it would a corrupted one, and the client retransmits.
	rewrite(skb, &loc, offsetof(struct iphdr, daddr), loc.daddr, alloc_ip, 2, loc.dport,
		alloc_port);
	return TC_ACT_OK;
}

// Allocation -> other hosts: replies from alloc_ip:alloc_port leave as host_ip:host_port.
SEC("tc")
int noded_tc_egress(struct __sk_buff *skb)
{
	struct l4_loc loc;
	if (!parse(skb, &loc))
		return TC_ACT_OK;
	struct rev_key key = {
		.alloc_ip = loc.saddr, .alloc_port = loc.sport, .proto = loc.proto, .pad = 0
	};
	struct rev_val *val = bpf_map_lookup_elem(&portmap_rev, &key);
	if (!val)
		return TC_ACT_OK;
	__be32 host_ip = val->host_ip;
	__be16 host_port = val->host_port;
	rewrite(skb, &loc, offsetof(struct iphdr, saddr), loc.saddr, host_ip, 0, loc.sport,
		host_port);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual MPL/GPL";
