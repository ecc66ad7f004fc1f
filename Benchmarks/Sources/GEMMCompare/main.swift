// gemm-compare: Strata's matmul/linear vs a raw cblas_sgemm call on the same
// buffers, interleaved in one run (so machine noise hits both alike), median of
// repeats, printed as a markdown table with the ratio.
//   swift run -c release --package-path Benchmarks gemm-compare [repeats]
import CRawBLAS
import Foundation
import Strata

/// Seconds on a monotonic clock (Strata's own helpers are package-internal).
func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s.isEmpty ? 0 : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2) }

struct Shape { let name: String, m: Int, n: Int, k: Int, transB: Bool }
let shapes: [Shape] = [512, 1024, 2048, 4096].map { Shape(name: "\($0)x\($0)x\($0)", m: $0, n: $0, k: $0, transB: false) }
    + [1, 16, 512].map { Shape(name: "[\($0),2048]x[2048,5632]^T", m: $0, n: 5632, k: 2048, transB: true) }

let repeats = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 7 : 7
Threads.set(ProcessInfo.processInfo.activeProcessorCount)
let info = MachineInfo.current()
print("machine: \(info.cpu), \(info.cores) cores, \(Threads.count) threads, OpenBLAS core \(info.openBLASCore)")
print("repeats: \(repeats) (median), interleaved\n")
print("| shape | Strata GFLOP/s | raw cblas_sgemm GFLOP/s | Strata / raw | path |")
print("|---|---:|---:|---:|---|")
for s in shapes {
    let a = Tensor(zeros: [s.m, s.k])
    let w = Tensor(zeros: s.transB ? [s.n, s.k] : [s.k, s.n])
    let c = Tensor(zeros: [s.m, s.n])
    for i in 0..<a.count { a.f32[i] = Float(i % 13) * 0.01 }
    for i in 0..<w.count { w.f32[i] = Float(i % 7) * 0.01 }
    func strata() {
        if s.transB {
            BLAS.linear(x: a.f32, rows: s.m, inFeatures: s.k, weight: w.f32, outFeatures: s.n, y: c.f32)
        } else {
            a.matmul(w, into: c)
        }
    }
    func raw() {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, s.transB ? CblasTrans : CblasNoTrans,
                    blasint(s.m), blasint(s.n), blasint(s.k), 1, a.f32, blasint(s.k),
                    w.f32, blasint(s.transB ? s.k : s.n), 0, c.f32, blasint(s.n))
    }
    // inner loop so each sample lasts >= ~20 ms
    let flops = 2.0 * Double(s.m * s.n * s.k)
    strata(); raw()
    let t0 = now(); raw(); let one = max(now() - t0, 1e-6)
    let inner = max(1, Int(0.02 / one))
    var ts: [Double] = [], tr: [Double] = []
    for _ in 0..<repeats {
        var t = now(); for _ in 0..<inner { strata() }; ts.append((now() - t) / Double(inner))
        t = now(); for _ in 0..<inner { raw() }; tr.append((now() - t) / Double(inner))
    }
    let gs = flops / median(ts) / 1e9, gr = flops / median(tr) / 1e9
    let path = s.transB && s.m == 1 ? "sgemv" : "sgemm"
    print(String(format: "| %@ | %.1f | %.1f | %.3f | %@ |", s.name, gs, gr, gs / gr, path))
}
