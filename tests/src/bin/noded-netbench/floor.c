/*
 * The floor of `cargo xtask bench net`: one allocation's network set up and torn down by the
 * smallest code that does the same kernel steps as noded, so that noded's cost can be read
 * against what the kernel alone asks for. Compiled by the bench with `cc -O2` into a temp dir
 * and run in the bench's "host" network namespace.
 *
 *   netbench-floor BRIDGE PIN_DIR
 *
 * then, one request per line on stdin:
 *
 *   run NS_PATH HOST_VETH ADDR PREFIX GATEWAY HOST_IP HOST_PORT ALLOC_PORT
 *
 * answered by `ok SETUP_NS TEARDOWN_NS` or `err MESSAGE`. Setup: unshare(CLONE_NEWNET) and a
 * bind mount of the namespace onto NS_PATH; one RTM_NEWLINK creating the veth pair with the
 * peer already named eth0 inside the namespace and the host side a port of BRIDGE, up;
 * address, eth0 up, lo up, default route via GATEWAY (a netlink socket opened inside the
 * namespace); the mapping's entries for TCP and UDP in a forward and a reverse hash map
 * (bpf(BPF_MAP_UPDATE_ELEM) on maps it created and pinned under PIN_DIR at start). Teardown:
 * the map entries deleted, RTM_DELLINK by name, the namespace unmounted and its file removed.
 * Every netlink request waits for its ACK, as noded's do. At EOF the pins are removed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static unsigned seq;
static char err_msg[512];

#define FAIL(...)                                                    \
	do {                                                         \
		snprintf(err_msg, sizeof err_msg, __VA_ARGS__);      \
		return -1;                                           \
	} while (0)

/* A request buffer; `n` is the message at its start (a union, so that the attributes written
 * after the header stay inside one object). */
struct req {
	union {
		struct nlmsghdr n;
		char buf[1024];
	};
};

static struct rtattr *add_attr(struct nlmsghdr *n, int type, const void *data, int len)
{
	struct rtattr *rta = (struct rtattr *)((char *)n + NLMSG_ALIGN(n->nlmsg_len));
	rta->rta_type = type;
	rta->rta_len = RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(rta), data, len);
	n->nlmsg_len = NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(rta->rta_len);
	return rta;
}

static void nest_end(struct nlmsghdr *n, struct rtattr *nest)
{
	nest->rta_len = (char *)n + n->nlmsg_len - (char *)nest;
}

/* Sends one request and waits for its ACK; returns 0 or -errno. */
static int talk(int fd, struct nlmsghdr *n)
{
	char buf[4096];
	n->nlmsg_seq = ++seq;
	n->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	if (send(fd, n, n->nlmsg_len, 0) < 0)
		return -errno;
	for (;;) {
		ssize_t len = recv(fd, buf, sizeof buf, 0);
		if (len < 0)
			return -errno;
		struct nlmsghdr *h = (struct nlmsghdr *)buf;
		for (; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_seq != seq)
				continue;
			if (h->nlmsg_type == NLMSG_ERROR)
				return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
		}
	}
}

static int nl_open(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		return -1;
	return fd;
}

static void link_msg(struct req *r, int type, int flags, int index, unsigned up)
{
	memset(r, 0, sizeof *r);
	r->n.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
	r->n.nlmsg_type = type;
	r->n.nlmsg_flags = flags;
	struct ifinfomsg *ifi = NLMSG_DATA(&r->n);
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = index;
	ifi->ifi_flags = up;
	ifi->ifi_change = up;
}

static long bpf(int cmd, union bpf_attr *a)
{
	return syscall(__NR_bpf, cmd, a, sizeof *a);
}

static int map_create(const char *pin, unsigned key, unsigned value)
{
	union bpf_attr a;
	memset(&a, 0, sizeof a);
	a.map_type = BPF_MAP_TYPE_HASH;
	a.key_size = key;
	a.value_size = value;
	a.max_entries = 65536;
	int fd = bpf(BPF_MAP_CREATE, &a);
	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof a);
	a.pathname = (uint64_t)(uintptr_t)pin;
	a.bpf_fd = fd;
	if (bpf(BPF_OBJ_PIN, &a) < 0)
		return -1;
	return fd;
}

static int map_op(int cmd, int fd, const void *key, const void *value)
{
	union bpf_attr a;
	memset(&a, 0, sizeof a);
	a.map_fd = fd;
	a.key = (uint64_t)(uintptr_t)key;
	a.value = (uint64_t)(uintptr_t)value;
	a.flags = BPF_ANY;
	return bpf(cmd, &a) < 0 ? -1 : 0;
}

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int host_nl, host_ns, fwd_map, rev_map, bridge_index;

struct alloc {
	char ns_path[256], veth[IFNAMSIZ];
	uint32_t addr, gateway, host_ip; /* network byte order */
	int prefix;
	uint16_t host_port, alloc_port; /* network byte order */
};

/* The layout of the ebpf crate's maps: (proto, pad, host_port) -> (host_ip, alloc_ip,
 * alloc_port, pad); (alloc_ip, alloc_port, proto, pad) -> (host_ip, host_port, pad). */
static int map_entries(const struct alloc *a, int cmd)
{
	for (int proto = 0; proto < 2; proto++) {
		uint8_t p = proto ? IPPROTO_UDP : IPPROTO_TCP;
		uint8_t fk[4] = {p, 0};
		memcpy(fk + 2, &a->host_port, 2);
		uint8_t fv[12] = {0};
		memcpy(fv, &a->host_ip, 4);
		memcpy(fv + 4, &a->addr, 4);
		memcpy(fv + 8, &a->alloc_port, 2);
		uint8_t rk[8] = {0};
		memcpy(rk, &a->addr, 4);
		memcpy(rk + 4, &a->alloc_port, 2);
		rk[6] = p;
		uint8_t rv[8] = {0};
		memcpy(rv, &a->host_ip, 4);
		memcpy(rv + 4, &a->host_port, 2);
		if (cmd == BPF_MAP_UPDATE_ELEM) {
			if (map_op(cmd, fwd_map, fk, fv) || map_op(cmd, rev_map, rk, rv))
				FAIL("map update: %s", strerror(errno));
		} else {
			if (map_op(cmd, rev_map, rk, NULL) || map_op(cmd, fwd_map, fk, NULL))
				FAIL("map delete: %s", strerror(errno));
		}
	}
	return 0;
}

static int setup(const struct alloc *a)
{
	struct req r;
	int e;
	int f = open(a->ns_path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (f < 0)
		FAIL("create %s: %s", a->ns_path, strerror(errno));
	close(f);
	if (unshare(CLONE_NEWNET) < 0)
		FAIL("unshare: %s", strerror(errno));
	/* Opened while inside: this socket talks to the new namespace for good. */
	int inner = nl_open();
	int ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int mounted = mount("/proc/thread-self/ns/net", a->ns_path, NULL, MS_BIND, NULL);
	int back = setns(host_ns, CLONE_NEWNET);
	if (back < 0) {
		fprintf(stderr, "netbench-floor: cannot return to the host namespace: %s\n",
			strerror(errno));
		exit(2);
	}
	if (inner < 0 || ns < 0 || mounted < 0)
		FAIL("namespace %s: %s", a->ns_path, strerror(errno));

	link_msg(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0, IFF_UP);
	add_attr(&r.n, IFLA_IFNAME, a->veth, strlen(a->veth) + 1);
	add_attr(&r.n, IFLA_MASTER, &bridge_index, 4);
	struct rtattr *info = add_attr(&r.n, IFLA_LINKINFO, NULL, 0);
	add_attr(&r.n, IFLA_INFO_KIND, "veth", 4);
	struct rtattr *data = add_attr(&r.n, IFLA_INFO_DATA, NULL, 0);
	struct rtattr *peer = add_attr(&r.n, VETH_INFO_PEER, NULL, 0);
	r.n.nlmsg_len += sizeof(struct ifinfomsg);
	add_attr(&r.n, IFLA_IFNAME, "eth0", 5);
	add_attr(&r.n, IFLA_NET_NS_FD, &ns, 4);
	nest_end(&r.n, peer);
	nest_end(&r.n, data);
	nest_end(&r.n, info);
	e = talk(host_nl, &r.n);
	close(ns);
	if (e)
		FAIL("RTM_NEWLINK veth %s: %s", a->veth, strerror(-e));

	struct ifreq ifr = {0};
	strcpy(ifr.ifr_name, "eth0");
	/* SIOCGIFINDEX on a socket resolves in that socket's namespace. */
	if (ioctl(inner, SIOCGIFINDEX, &ifr) < 0)
		FAIL("eth0 index: %s", strerror(errno));
	int eth0 = ifr.ifr_ifindex;

	memset(&r, 0, sizeof r);
	r.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
	r.n.nlmsg_type = RTM_NEWADDR;
	r.n.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	struct ifaddrmsg *ifa = NLMSG_DATA(&r.n);
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = a->prefix;
	ifa->ifa_index = eth0;
	add_attr(&r.n, IFA_LOCAL, &a->addr, 4);
	add_attr(&r.n, IFA_ADDRESS, &a->addr, 4);
	if ((e = talk(inner, &r.n)))
		FAIL("RTM_NEWADDR: %s", strerror(-e));
	link_msg(&r, RTM_NEWLINK, 0, eth0, IFF_UP);
	if ((e = talk(inner, &r.n)))
		FAIL("eth0 up: %s", strerror(-e));
	link_msg(&r, RTM_NEWLINK, 0, 1 /* lo */, IFF_UP);
	if ((e = talk(inner, &r.n)))
		FAIL("lo up: %s", strerror(-e));

	memset(&r, 0, sizeof r);
	r.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
	r.n.nlmsg_type = RTM_NEWROUTE;
	r.n.nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
	struct rtmsg *rt = NLMSG_DATA(&r.n);
	rt->rtm_family = AF_INET;
	rt->rtm_table = RT_TABLE_MAIN;
	rt->rtm_protocol = RTPROT_BOOT;
	rt->rtm_scope = RT_SCOPE_UNIVERSE;
	rt->rtm_type = RTN_UNICAST;
	add_attr(&r.n, RTA_GATEWAY, &a->gateway, 4);
	add_attr(&r.n, RTA_OIF, &eth0, 4);
	e = talk(inner, &r.n);
	close(inner);
	if (e)
		FAIL("default route: %s", strerror(-e));
	return map_entries(a, BPF_MAP_UPDATE_ELEM);
}

static int teardown(const struct alloc *a)
{
	struct req r;
	if (map_entries(a, BPF_MAP_DELETE_ELEM))
		return -1;
	link_msg(&r, RTM_DELLINK, 0, 0, 0);
	add_attr(&r.n, IFLA_IFNAME, a->veth, strlen(a->veth) + 1);
	int e = talk(host_nl, &r.n);
	if (e)
		FAIL("RTM_DELLINK %s: %s", a->veth, strerror(-e));
	if (umount2(a->ns_path, MNT_DETACH) < 0 || unlink(a->ns_path) < 0)
		FAIL("remove %s: %s", a->ns_path, strerror(errno));
	return 0;
}

int main(int argc, char **argv)
{
	char line[1024], fwd_pin[512], rev_pin[512];
	if (argc != 3) {
		fprintf(stderr, "usage: netbench-floor BRIDGE PIN_DIR\n");
		return 2;
	}
	snprintf(fwd_pin, sizeof fwd_pin, "%s/floor_portmap", argv[2]);
	snprintf(rev_pin, sizeof rev_pin, "%s/floor_portmap_rev", argv[2]);
	host_nl = nl_open();
	host_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	bridge_index = if_nametoindex(argv[1]);
	fwd_map = map_create(fwd_pin, 4, 12);
	rev_map = fwd_map < 0 ? -1 : map_create(rev_pin, 8, 8);
	if (host_nl < 0 || host_ns < 0 || !bridge_index || fwd_map < 0 || rev_map < 0) {
		fprintf(stderr, "netbench-floor: setup (bridge %s, pins in %s): %s\n", argv[1],
			argv[2], strerror(errno));
		unlink(fwd_pin);
		unlink(rev_pin);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		struct alloc a;
		char addr[32], gw[32], host_ip[32];
		unsigned hp, ap;
		memset(&a, 0, sizeof a);
		if (sscanf(line, "run %255s %15s %31s %d %31s %31s %u %u", a.ns_path, a.veth, addr,
			   &a.prefix, gw, host_ip, &hp, &ap) != 8 ||
		    inet_pton(AF_INET, addr, &a.addr) != 1 ||
		    inet_pton(AF_INET, gw, &a.gateway) != 1 ||
		    inet_pton(AF_INET, host_ip, &a.host_ip) != 1) {
			printf("err malformed request\n");
			fflush(stdout);
			continue;
		}
		a.host_port = htons(hp);
		a.alloc_port = htons(ap);
		double t0 = now_ns();
		int e = setup(&a);
		double t1 = now_ns();
		if (!e)
			e = teardown(&a);
		double t2 = now_ns();
		if (e)
			printf("err %s\n", err_msg);
		else
			printf("ok %.0f %.0f\n", t1 - t0, t2 - t1);
		fflush(stdout);
	}
	unlink(fwd_pin);
	unlink(rev_pin);
	return 0;
}
