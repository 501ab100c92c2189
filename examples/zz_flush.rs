use libmemcached::Client;
use libmemcached::testing::{Memcached, unused_port};
fn main() {
    let s = Memcached::start().unwrap();
    let dead = format!("127.0.0.1:{}", unused_port().unwrap());
    let mc = Client::new([s.spec(), dead.clone()]).unwrap();
    println!("stats first {:?}", mc.stats(None).map(|v| v.len()));
    let mc = Client::new([dead.clone(), s.spec()]).unwrap();
    println!("stats dead first {:?}", mc.stats(None).map(|v| v.len()));
}
