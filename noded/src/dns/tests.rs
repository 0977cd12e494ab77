//! The answers, decoded with hickory (an independent decoder of the hand-patched messages),
//! and the sockets on loopback.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use controlplane::model::{HealthStatus, ServiceRegistration};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::answer::{answer, Transport, Verdict};
use super::*;

fn settings(forward: bool) -> ViewSettings {
    ViewSettings {
        domain: "noded".into(),
        ttl_secs: 7,
        forward,
    }
}

fn reg(
    id: &str,
    ns: &str,
    name: &str,
    addr: &str,
    port: u16,
    tags: &[&str],
    status: HealthStatus,
) -> Arc<ServiceRegistration> {
    Arc::new(ServiceRegistration {
        id: id.into(),
        service_name: name.into(),
        namespace: ns.into(),
        address: addr.into(),
        port,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        status,
        ..Default::default()
    })
}

fn catalog() -> Vec<Arc<ServiceRegistration>> {
    use HealthStatus::*;
    vec![
        reg(
            "a",
            "default",
            "web",
            "10.0.0.1",
            8080,
            &["v1", "Primary"],
            Passing,
        ),
        reg("b", "default", "web", "10.0.0.2", 8081, &["v2"], Passing),
        reg("c", "default", "web", "10.0.0.3", 8082, &["v1"], Critical),
        reg("d", "prod", "web", "10.1.0.1", 9000, &["v1"], Passing),
        reg("e", "default", "db", "fd00::5", 5432, &[], Passing),
        reg("f", "default", "down", "10.0.0.9", 1, &[], Critical),
        reg("g", "default", "ext", "db.example.com", 3306, &[], Passing),
        reg(
            "h",
            "default",
            "odd",
            "10.0.0.7",
            1,
            &["has.dot", "has space"],
            Warning,
        ),
    ]
}

fn view() -> View {
    View::build(settings(false), &catalog(), 42)
}

fn query_bytes(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(0xBEEF)
        .set_recursion_desired(true)
        .set_op_code(OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m.to_vec().unwrap()
}

fn ask_with(view: &View, query: &[u8], t: Transport) -> Message {
    let mut out = Vec::new();
    assert_eq!(answer(view, query, t, &mut out), Verdict::Reply);
    Message::from_vec(&out).unwrap_or_else(|e| panic!("reply does not decode: {e}: {out:?}"))
}

fn ask(view: &View, name: &str, rtype: RecordType) -> Message {
    let reply = ask_with(view, &query_bytes(name, rtype), Transport::Udp);
    assert_eq!(reply.id(), 0xBEEF);
    assert_eq!(reply.message_type(), MessageType::Response);
    assert!(reply.recursion_desired(), "RD is copied from the query");
    reply
}

fn a_set(m: &Message) -> BTreeSet<IpAddr> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn ips(list: &[&str]) -> BTreeSet<IpAddr> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn a_lists_every_passing_instance_of_the_default_namespace() {
    let r = ask(&view(), "web.service.noded.", RecordType::A);
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(r.authoritative());
    assert_eq!(a_set(&r), ips(&["10.0.0.1", "10.0.0.2"]));
    assert!(r
        .answers()
        .iter()
        .all(|a| a.ttl() == 7 && a.name().to_ascii() == "web.service.noded."));
}

#[test]
fn names_are_case_insensitive_and_the_question_keeps_its_case() {
    let r = ask(&view(), "WeB.SeRvIcE.NoDeD.", RecordType::A);
    assert_eq!(a_set(&r), ips(&["10.0.0.1", "10.0.0.2"]));
    assert_eq!(r.queries()[0].name().to_ascii(), "WeB.SeRvIcE.NoDeD.");
    // A tag written in upper case is found in any case.
    let r = ask(&view(), "primary.web.service.noded.", RecordType::A);
    assert_eq!(a_set(&r), ips(&["10.0.0.1"]));
}

#[test]
fn tags_select_the_instances_that_carry_them() {
    let r = ask(&view(), "v1.web.service.noded.", RecordType::A);
    assert_eq!(
        a_set(&r),
        ips(&["10.0.0.1"]),
        "the critical v1 instance is left out"
    );
    let r = ask(&view(), "v2.web.service.noded.", RecordType::A);
    assert_eq!(a_set(&r), ips(&["10.0.0.2"]));
    let r = ask(&view(), "v3.web.service.noded.", RecordType::A);
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
}

#[test]
fn namespaces_have_names_of_their_own() {
    let v = view();
    assert_eq!(
        a_set(&ask(&v, "web.service.prod.noded.", RecordType::A)),
        ips(&["10.1.0.1"])
    );
    assert_eq!(
        a_set(&ask(&v, "v1.web.service.prod.noded.", RecordType::A)),
        ips(&["10.1.0.1"])
    );
    assert_eq!(
        a_set(&ask(&v, "web.service.default.noded.", RecordType::A)),
        ips(&["10.0.0.1", "10.0.0.2"])
    );
    // The namespace-less form is the default namespace only.
    assert!(!a_set(&ask(&v, "web.service.noded.", RecordType::A))
        .contains(&"10.1.0.1".parse().unwrap()));
    assert_eq!(
        ask(&v, "web.service.staging.noded.", RecordType::A).response_code(),
        ResponseCode::NXDomain
    );
}

#[test]
fn srv_gives_ports_and_targets_that_resolve() {
    let v = view();
    let r = ask(&v, "web.service.noded.", RecordType::SRV);
    let mut got = Vec::new();
    for rec in r.answers() {
        let RData::SRV(srv) = rec.data() else {
            panic!("not SRV: {rec:?}")
        };
        assert_eq!((srv.priority(), srv.weight()), (1, 1));
        got.push((srv.port(), srv.target().to_ascii()));
    }
    got.sort();
    assert_eq!(
        got,
        [
            (8080, "0a000001.addr.noded.".to_string()),
            (8081, "0a000002.addr.noded.".to_string())
        ]
    );
    // The targets' addresses come along in the additional section…
    let extra: BTreeSet<(String, IpAddr)> = r
        .additionals()
        .iter()
        .filter_map(|a| match a.data() {
            RData::A(ip) => Some((a.name().to_ascii(), IpAddr::V4(ip.0))),
            _ => None,
        })
        .collect();
    assert_eq!(extra.len(), 2);
    assert!(extra.contains(&("0a000001.addr.noded.".into(), "10.0.0.1".parse().unwrap())));
    // …and the targets answer on their own.
    let t = ask(&v, "0A000001.addr.noded.", RecordType::A);
    assert_eq!(a_set(&t), ips(&["10.0.0.1"]));
    assert_eq!(
        ask(&v, "0a000001.addr.noded.", RecordType::AAAA).answer_count(),
        0
    );
    // IPv6 instances: AAAA, and 32-digit targets.
    let r = ask(&v, "db.service.noded.", RecordType::SRV);
    let RData::SRV(srv) = r.answers()[0].data() else {
        panic!()
    };
    assert_eq!(
        srv.target().to_ascii(),
        "fd000000000000000000000000000005.addr.noded."
    );
    assert_eq!(
        a_set(&ask(&v, &srv.target().to_ascii(), RecordType::AAAA)),
        ips(&["fd00::5"])
    );
    assert_eq!(
        a_set(&ask(&v, "db.service.noded.", RecordType::AAAA)),
        ips(&["fd00::5"])
    );
    // An instance advertised at a host name: SRV targets that name, no A of ours.
    let r = ask(&v, "ext.service.noded.", RecordType::SRV);
    let RData::SRV(srv) = r.answers()[0].data() else {
        panic!()
    };
    assert_eq!(
        (srv.port(), srv.target().to_ascii()),
        (3306, "db.example.com.".to_string())
    );
    assert_eq!(
        ask(&v, "ext.service.noded.", RecordType::A).answer_count(),
        0
    );
}

fn assert_negative(r: &Message, code: ResponseCode) {
    assert_eq!(r.response_code(), code);
    assert_eq!(r.answer_count(), 0);
    let soa = r
        .name_servers()
        .first()
        .expect("an SOA in the authority section");
    assert_eq!(soa.name().to_ascii(), "noded.");
    let RData::SOA(s) = soa.data() else {
        panic!("not an SOA: {soa:?}")
    };
    assert_eq!(s.minimum(), 7, "negative answers are cached for the TTL");
}

#[test]
fn existing_names_without_the_type_are_nodata_and_others_nxdomain() {
    let v = view();
    assert_negative(
        &ask(&v, "web.service.noded.", RecordType::TXT),
        ResponseCode::NoError,
    );
    assert_negative(
        &ask(&v, "web.service.noded.", RecordType::AAAA),
        ResponseCode::NoError,
    );
    // Names above existing ones exist (empty non-terminals): NODATA, so that resolvers that
    // minimise query names go on asking.
    assert_negative(
        &ask(&v, "service.noded.", RecordType::A),
        ResponseCode::NoError,
    );
    assert_negative(
        &ask(&v, "service.prod.noded.", RecordType::A),
        ResponseCode::NoError,
    );
    assert_negative(&ask(&v, "noded.", RecordType::A), ResponseCode::NoError);
    assert_negative(
        &ask(&v, "nope.service.noded.", RecordType::A),
        ResponseCode::NXDomain,
    );
    assert_negative(
        &ask(&v, "a.b.c.nope.noded.", RecordType::SRV),
        ResponseCode::NXDomain,
    );
    assert_negative(
        &ask(&v, "zz000001.addr.noded.", RecordType::A),
        ResponseCode::NXDomain,
    );
    // Only passing instances answer: a service with none is unknown.
    assert_negative(
        &ask(&v, "down.service.noded.", RecordType::A),
        ResponseCode::NXDomain,
    );
    assert_negative(
        &ask(&v, "odd.service.noded.", RecordType::A),
        ResponseCode::NXDomain,
    );
    let soa = ask(&v, "noded.", RecordType::SOA);
    assert_eq!(soa.answer_count(), 1);
}

#[test]
fn names_outside_the_domain_are_refused_or_forwarded() {
    let r = ask(&view(), "example.com.", RecordType::A);
    assert_eq!(r.response_code(), ResponseCode::Refused);
    // A name that merely ends in the domain's text is not in it.
    assert_eq!(
        ask(&view(), "web.service.xnoded.", RecordType::A).response_code(),
        ResponseCode::Refused
    );
    let forwarding = View::build(settings(true), &catalog(), 1);
    let mut out = Vec::new();
    let q = query_bytes("example.com.", RecordType::A);
    assert_eq!(
        answer(&forwarding, &q, Transport::Udp, &mut out),
        Verdict::Forward
    );
    // Its own names it still answers, with RA set.
    let r = ask(&forwarding, "web.service.noded.", RecordType::A);
    assert!(r.recursion_available());
    assert_eq!(r.answer_count(), 2);
}

#[test]
fn malformed_queries_get_errors_never_a_panic() {
    let v = view();
    let mut out = Vec::new();
    // No header: nothing to answer.
    assert_eq!(
        answer(&v, &[1, 2, 3], Transport::Udp, &mut out),
        Verdict::Drop
    );
    // A response is never answered.
    let mut resp = query_bytes("web.service.noded.", RecordType::A);
    resp[2] |= 0x80;
    assert_eq!(answer(&v, &resp, Transport::Udp, &mut out), Verdict::Drop);
    let formerr = |bytes: &[u8]| {
        let r = ask_with(&v, bytes, Transport::Udp);
        assert_eq!(r.response_code(), ResponseCode::FormErr, "{bytes:?}");
        assert_eq!(r.id(), u16::from_be_bytes([bytes[0], bytes[1]]));
    };
    let good = query_bytes("web.service.noded.", RecordType::A);
    // No question, two questions.
    let mut none = good.clone();
    none[5] = 0;
    formerr(&none[..12]);
    let mut two = good.clone();
    two[5] = 2;
    formerr(&two);
    // The name cut short, the type cut short.
    formerr(&good[..16]);
    formerr(&good[..good.len() - 2]);
    // A compression pointer, and a "label" of 64 bytes (its length byte has 0x40 set).
    let mut ptr = good[..12].to_vec();
    ptr.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
    formerr(&ptr);
    let mut long_label = good[..12].to_vec();
    long_label.push(64);
    long_label.extend(std::iter::repeat_n(b'a', 64));
    long_label.extend_from_slice(&[0, 0, 1, 0, 1]);
    formerr(&long_label);
    // A name of 4 × 63-byte labels + the domain: over 255 bytes.
    let mut long_name = good[..12].to_vec();
    for _ in 0..4 {
        long_name.push(63);
        long_name.extend(std::iter::repeat_n(b'a', 63));
    }
    long_name.extend_from_slice(&[5, b'n', b'o', b'd', b'e', b'd', 0, 0, 1, 0, 1]);
    formerr(&long_name);
    // Another opcode (NOTIFY): not implemented.
    let mut notify = good.clone();
    notify[2] = (notify[2] & !0x78) | (4 << 3);
    assert_eq!(
        ask_with(&v, &notify, Transport::Udp).response_code(),
        ResponseCode::NotImp
    );
    // Another class (CHAOS) in our zone: refused.
    let mut chaos = good.clone();
    let n = chaos.len();
    chaos[n - 1] = 3;
    assert_eq!(
        ask_with(&v, &chaos, Transport::Udp).response_code(),
        ResponseCode::Refused
    );
    // Junk of every length, from a fixed seed: a reply, a forward or a drop, never a panic.
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for len in 0..600usize {
        let mut junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = answer(&v, &junk, Transport::Udp, &mut out);
        // And the good query mutated one byte at a time.
        junk = good.clone();
        let i = len % junk.len();
        junk[i] = x as u8;
        let _ = answer(&v, &junk, Transport::Tcp, &mut out);
    }
}

#[test]
fn answers_over_512_bytes_are_truncated_for_udp_and_whole_over_tcp() {
    let many: Vec<Arc<ServiceRegistration>> = (0..60)
        .map(|i| {
            reg(
                &format!("i{i:02}"),
                "default",
                "big",
                &format!("10.2.0.{i}"),
                2000 + i as u16,
                &[],
                HealthStatus::Passing,
            )
        })
        .collect();
    let v = View::build(settings(false), &many, 3);
    for rtype in [RecordType::A, RecordType::SRV] {
        let q = query_bytes("big.service.noded.", rtype);
        let mut out = Vec::new();
        answer(&v, &q, Transport::Udp, &mut out);
        assert!(out.len() <= 512, "{rtype}: {} bytes over UDP", out.len());
        let udp = Message::from_vec(&out).unwrap();
        assert!(udp.truncated(), "{rtype}: TC set");
        assert!(udp.answer_count() > 0 && udp.answer_count() < 60);
        let tcp = ask_with(&v, &q, Transport::Tcp);
        assert!(!tcp.truncated());
        assert_eq!(tcp.answer_count(), 60, "{rtype}: every instance over TCP");
        if rtype == RecordType::SRV {
            assert_eq!(tcp.additional_count(), 60);
        }
    }
}

#[test]
fn instances_rotate_between_answers() {
    let v = view();
    let firsts: BTreeSet<String> = (0..4)
        .map(|_| {
            format!(
                "{:?}",
                ask(&v, "web.service.noded.", RecordType::A).answers()[0].data()
            )
        })
        .collect();
    assert_eq!(firsts.len(), 2, "each instance comes first in turn");
}

#[test]
fn names_the_view_answers() {
    let names = view().names();
    for want in [
        "web.service.noded.",
        "v1.web.service.noded.",
        "primary.web.service.noded.",
        "web.service.default.noded.",
        "web.service.prod.noded.",
        "v1.web.service.prod.noded.",
    ] {
        assert!(names.contains(&want.to_string()), "{want} in {names:?}");
    }
    assert!(!names
        .iter()
        .any(|n| n.contains("down") || n.contains("dot") || n.contains("space")));
}

// --- sockets, on loopback --------------------------------------------------------------

fn server_settings(forward: bool, recursors: Vec<SocketAddr>) -> DnsSettings {
    DnsSettings {
        enabled: true,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        domain: "noded".into(),
        ttl: std::time::Duration::from_secs(7),
        forward,
        recursors,
        required: true,
    }
}

fn udp_ask(addr: SocketAddr, q: &[u8]) -> std::io::Result<Message> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    sock.send_to(q, addr)?;
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf)?;
    Ok(Message::from_vec(&buf[..n]).unwrap())
}

async fn tcp_ask(addr: SocketAddr, q: &[u8]) -> Message {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    // Two queries on one connection: it stays open between them.
    s.write_all(&framed).await.unwrap();
    s.write_all(&framed).await.unwrap();
    let mut last = None;
    for _ in 0..2 {
        let n = s.read_u16().await.unwrap();
        let mut buf = vec![0u8; n as usize];
        s.read_exact(&mut buf).await.unwrap();
        last = Some(Message::from_vec(&buf).unwrap());
    }
    last.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_udp_and_tcp_on_loopback_and_follows_the_view() {
    let server = DnsServer::start(
        &server_settings(false, vec![]),
        tokio::runtime::Handle::current(),
        0,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let q = query_bytes("web.service.noded.", RecordType::A);
    let before = tokio::task::spawn_blocking(move || udp_ask(addr, &q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        before.response_code(),
        ResponseCode::NXDomain,
        "an empty view at start"
    );
    server.cell().store(View::build(
        server_settings(false, vec![]).view_settings(),
        &catalog(),
        5,
    ));
    let q = query_bytes("web.service.noded.", RecordType::A);
    let after = tokio::task::spawn_blocking(move || udp_ask(addr, &q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a_set(&after), ips(&["10.0.0.1", "10.0.0.2"]));
    let tcp = tcp_ask(addr, &query_bytes("web.service.noded.", RecordType::SRV)).await;
    assert_eq!(tcp.answer_count(), 2);
    // A second server cannot take the same address.
    let mut same = server_settings(false, vec![]);
    same.port = addr.port();
    assert!(DnsServer::start(&same, tokio::runtime::Handle::current(), 0).is_err());
    server.stop();
    let q = query_bytes("web.service.noded.", RecordType::A);
    let gone = tokio::task::spawn_blocking(move || {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        sock.send_to(&q, addr).unwrap();
        sock.recv(&mut [0u8; 512]).is_err()
    });
    assert!(gone.await.unwrap(), "stopped: nothing answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_listener_follows_the_bridge() {
    let server = DnsServer::start(
        &server_settings(false, vec![]),
        tokio::runtime::Handle::current(),
        0,
    )
    .unwrap();
    server.cell().store(View::build(
        server_settings(false, vec![]).view_settings(),
        &catalog(),
        5,
    ));
    // 127.0.0.2 stands in for the gateway: any 127/8 address is local.
    let gw = Ipv4Addr::new(127, 0, 0, 2);
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.bridge_changed(Some(gw)))
        .await
        .unwrap();
    let addr = server.bridge_addr().unwrap();
    assert_eq!(addr.ip(), IpAddr::V4(gw));
    let q = query_bytes("web.service.prod.noded.", RecordType::A);
    let r = tokio::task::spawn_blocking(move || udp_ask(addr, &q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a_set(&r), ips(&["10.1.0.1"]));
    let s = server.clone();
    tokio::task::spawn_blocking(move || s.bridge_changed(None))
        .await
        .unwrap();
    assert_eq!(server.bridge_addr(), None);
    server.stop();
}

/// A tiny upstream: answers every A query with 192.0.2.1 over UDP.
fn upstream() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        if let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::new();
            r.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_recursion_available(true);
            let name = q.queries()[0].name().clone();
            r.add_query(q.queries()[0].clone());
            let mut rec = Record::from_rdata(
                name,
                60,
                RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(192, 0, 2, 1))),
            );
            rec.set_dns_class(DNSClass::IN);
            r.add_answer(rec);
            sock.send_to(&r.to_vec().unwrap(), peer).unwrap();
        }
    });
    (addr, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_domain_go_to_the_upstream() {
    let (up, responder) = upstream();
    let server = DnsServer::start(
        &server_settings(true, vec![up]),
        tokio::runtime::Handle::current(),
        0,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let q = query_bytes("example.com.", RecordType::A);
    let r = tokio::task::spawn_blocking(move || udp_ask(addr, &q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.id(), 0xBEEF);
    assert_eq!(a_set(&r), ips(&["192.0.2.1"]));
    responder.join().unwrap();
    // The upstream is gone now: SERVFAIL after the timeout, not silence.
    let q = query_bytes("example.org.", RecordType::A);
    let r = tokio::task::spawn_blocking(move || udp_ask(addr, &q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.response_code(), ResponseCode::ServFail);
    // Refused when forwarding is off.
    let refusing = DnsServer::start(
        &server_settings(false, vec![up]),
        tokio::runtime::Handle::current(),
        0,
    )
    .unwrap();
    let addr = refusing.local_addr().unwrap();
    let q = query_bytes("example.com.", RecordType::A);
    let r = tokio::task::spawn_blocking(move || udp_ask(addr, &q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.response_code(), ResponseCode::Refused);
    server.stop();
    refusing.stop();
}

#[test]
fn host_resolvers_skip_our_own_addresses() {
    let conf = "# comment\nnameserver 127.0.0.1\nnameserver 10.0.0.53\nsearch example.com\nnameserver bogus\nnameserver 10.0.0.53\nnameserver ::1\n";
    let own = [SocketAddr::from(([127, 0, 0, 1], 53))];
    assert_eq!(
        forward::upstreams_from_resolv_conf(conf, &own),
        vec![
            SocketAddr::from(([10, 0, 0, 53], 53)),
            "[::1]:53".parse().unwrap()
        ]
    );
}

// --- the catalog follower -----------------------------------------------------------------

/// The servers' side of `watch_services` as a blocking query over a watched catalog, which
/// can be told to fail (the servers unreachable). The client's other calls are not used.
struct ScriptedServers {
    catalog: tokio::sync::watch::Sender<(Vec<Arc<ServiceRegistration>>, u64)>,
    fail: std::sync::atomic::AtomicBool,
}

impl crate::client::ServerRpc for ScriptedServers {
    fn register_node(
        &self,
        _: controlplane::model::Node,
    ) -> futures::future::BoxFuture<'_, Result<u64, String>> {
        Box::pin(async { Err("not used".to_string()) })
    }
    fn update_allocs(
        &self,
        _: Vec<controlplane::model::AllocClientUpdate>,
    ) -> futures::future::BoxFuture<'_, Result<u64, String>> {
        Box::pin(async { Err("not used".to_string()) })
    }
    fn node_allocs(
        &self,
        _: String,
        _: u64,
        _: std::time::Duration,
    ) -> futures::future::BoxFuture<'_, Result<crate::client::NodeAllocs, String>> {
        Box::pin(async { Err("not used".to_string()) })
    }
    fn heartbeat(
        &self,
        _: String,
    ) -> futures::future::BoxFuture<'_, Result<std::time::Duration, crate::client::HeartbeatError>>
    {
        Box::pin(async { Err(crate::client::HeartbeatError::Failed("not used".into())) })
    }
    fn drain_self(
        &self,
        _: String,
        _: Option<controlplane::model::DrainStrategy>,
    ) -> futures::future::BoxFuture<'_, Result<u64, String>> {
        Box::pin(async { Err("not used".to_string()) })
    }
    fn upsert_services(
        &self,
        _: Vec<ServiceRegistration>,
    ) -> futures::future::BoxFuture<'_, Result<u64, String>> {
        Box::pin(async { Err("not used".to_string()) })
    }
    fn delete_services(
        &self,
        _: Vec<String>,
        _: Vec<String>,
    ) -> futures::future::BoxFuture<'_, Result<u64, String>> {
        Box::pin(async { Err("not used".to_string()) })
    }
    fn watch_services(
        &self,
        min_index: u64,
        wait: std::time::Duration,
    ) -> futures::future::BoxFuture<'_, Result<crate::client::ServiceCatalog, String>> {
        Box::pin(async move {
            let mut rx = self.catalog.subscribe();
            let _ = tokio::time::timeout(wait, rx.wait_for(|(_, i)| *i > min_index)).await;
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err("no server answered".to_string());
            }
            let now = rx.borrow().clone();
            Ok(now)
        })
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn the_view_follows_the_catalog_and_outlives_server_errors() {
    use std::sync::atomic::Ordering;
    let (sender, _) = tokio::sync::watch::channel((catalog(), 5));
    let servers = Arc::new(ScriptedServers {
        catalog: sender,
        fail: false.into(),
    });
    let cell = Arc::new(ViewCell::new(View::empty(settings(false))));
    let follower = tokio::spawn(follow_catalog(
        servers.clone(),
        cell.clone(),
        settings(false),
    ));
    until("the first catalog is in the view", || {
        cell.load().index == 5
    })
    .await;
    assert_eq!(
        a_set(&ask(&cell.load(), "web.service.noded.", RecordType::A)).len(),
        2
    );
    // An instance turns critical: it leaves the answers.
    let mut next = catalog();
    next[1] = reg(
        "b",
        "default",
        "web",
        "10.0.0.2",
        8081,
        &["v2"],
        HealthStatus::Critical,
    );
    servers.catalog.send_replace((next, 6));
    until("index 6 is in the view", || cell.load().index == 6).await;
    assert_eq!(
        a_set(&ask(&cell.load(), "web.service.noded.", RecordType::A)),
        ips(&["10.0.0.1"])
    );
    // The servers fail: the last view keeps answering.
    servers.fail.store(true, Ordering::SeqCst);
    servers.catalog.send_replace((vec![], 7));
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(cell.load().index, 6);
    assert_eq!(
        a_set(&ask(&cell.load(), "web.service.noded.", RecordType::A)),
        ips(&["10.0.0.1"])
    );
    // They are back: the follower catches up.
    servers.fail.store(false, Ordering::SeqCst);
    until("index 7 is in the view", || cell.load().index == 7).await;
    assert_eq!(
        ask(&cell.load(), "web.service.noded.", RecordType::A).response_code(),
        ResponseCode::NXDomain
    );
    follower.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_tcp_are_forwarded_over_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream on TCP only: answers one query with 192.0.2.7.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = upstream.local_addr().unwrap();
    let responder = tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        let n = s.read_u16().await.unwrap();
        let mut buf = vec![0u8; n as usize];
        s.read_exact(&mut buf).await.unwrap();
        let q = Message::from_vec(&buf).unwrap();
        let mut r = Message::new();
        r.set_id(q.id()).set_message_type(MessageType::Response);
        r.add_query(q.queries()[0].clone());
        r.add_answer(Record::from_rdata(
            q.queries()[0].name().clone(),
            60,
            RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(192, 0, 2, 7))),
        ));
        let bytes = r.to_vec().unwrap();
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        s.write_all(&framed).await.unwrap();
    });
    let server = DnsServer::start(
        &server_settings(true, vec![up]),
        tokio::runtime::Handle::current(),
        0,
    )
    .unwrap();
    let addr = server.local_addr().unwrap();
    let q = query_bytes("example.net.", RecordType::A);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).await.unwrap();
    let n = s.read_u16().await.unwrap();
    let mut buf = vec![0u8; n as usize];
    s.read_exact(&mut buf).await.unwrap();
    let r = Message::from_vec(&buf).unwrap();
    assert_eq!(r.id(), 0xBEEF);
    assert_eq!(a_set(&r), ips(&["192.0.2.7"]));
    responder.await.unwrap();
    server.stop();
}

/// A listener that must not forward (one bound outside loopback) answers the catalog and
/// refuses every other name, over UDP and TCP, even with forwarding configured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_must_not_forward_refuses_other_names() {
    use super::server::{Listener, Shared};
    let settings = server_settings(true, vec!["127.0.0.1:9".parse().unwrap()]);
    let cell = Arc::new(ViewCell::new(View::build(
        settings.view_settings(),
        &catalog(),
        5,
    )));
    let shared = Arc::new(Shared {
        cell,
        forwarder: None,
        runtime: tokio::runtime::Handle::current(),
        refuse_forwarding: true,
    });
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), &shared, 1).unwrap();
    let addr = listener.addr;
    let q = query_bytes("example.org.", RecordType::A);
    let outside = tokio::task::spawn_blocking(move || udp_ask(addr, &q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outside.response_code(), ResponseCode::Refused);
    let tcp = tcp_ask(addr, &query_bytes("example.org.", RecordType::A)).await;
    assert_eq!(tcp.response_code(), ResponseCode::Refused);
    let q = query_bytes("web.service.noded.", RecordType::A);
    let inside = tokio::task::spawn_blocking(move || udp_ask(addr, &q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a_set(&inside), ips(&["10.0.0.1", "10.0.0.2"]));
    listener.stop();
}
