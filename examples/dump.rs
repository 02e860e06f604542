// Throwaway: raw logits (3 views) + embeddings + simple image stats for gate/calibration design.
use burn::prelude::*;
use dermscreen::classifier::Classifier;
use std::io::Write;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let list = std::fs::read_to_string(&args[1]).unwrap(); // lines: path,group,label
    let mut out = std::fs::File::create(&args[2]).unwrap();
    let c = Classifier::load_dir(std::path::Path::new("model"), Device::flex()).unwrap();
    let rows: Vec<Vec<String>> = list.lines().map(|l| l.split(',').map(String::from).collect()).collect();
    for chunk in rows.chunks(32) {
        let mut inputs = vec![]; let mut kept = vec![];
        for r in chunk {
            match std::fs::read(&r[0]).map_err(|e| e.to_string()).and_then(|b| c.input_from_bytes(&b).map_err(|e| e.to_string())) {
                Ok(x) => { inputs.extend(x); kept.push(r); }
                Err(e) => eprintln!("{}: {e}", r[0]),
            }
        }
        let (logits, n) = c.logits(&inputs).unwrap();
        let l: Vec<f32> = logits.into_data().to_vec().unwrap();
        let emb = c.embeddings(&inputs).unwrap();
        let k = 7;
        for (i, r) in kept.iter().enumerate() {
            let mut f: Vec<String> = vec![r[1].clone(), r[2].clone(), r[0].clone()];
            for v in 0..3 { for j in 0..k { f.push(format!("{:.5}", l[(v*n+i)*k+j])); } }
            for e in &emb[i] { f.push(format!("{:.5}", e)); }
            writeln!(out, "{}", f.join(",")).unwrap();
        }
    }
}
