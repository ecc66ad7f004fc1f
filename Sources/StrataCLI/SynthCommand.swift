import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataPlanner
import StrataTensor

struct Synthesize: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "synth", abstract: "Write a random-weight model folder of a real shape.")
    @Option(help: "Preset: \(Synth.presets.map { $0.name }.joined(separator: ", ")).") var preset: String
    @Option(help: "Weight dtype: f32, f16 or bf16.") var dtype: String = "f32"
    @Option(help: "Seed of the weights.") var seed: UInt64 = 0
    @Option(help: "Write a quantized GGUF file instead of a folder, by this scheme (\(QuantizeModel.Scheme.allCases.map(\.rawValue).joined(separator: ", "))): no full-precision copy is made (what a mixture of experts of real size needs).")
    var gguf: String?
    @Option(help: "With --gguf, a mixture whose router has a bias (gpt-oss): expert popularity by a Zipf law of this exponent (router biases -S ln(rank), ranks in an order that differs by layer), as real models reuse experts. 0: none (random routers route nearly uniformly, a cache's worst case).")
    var routingSkew: Double?
    @Option(help: "Output folder (a .gguf file with --gguf).") var out: String
    @OptionGroup var threads: ThreadOption

    func run() throws {
        try threads.apply()
        Interrupt.install()
        guard let dt = DType(rawValue: dtype), !dt.isQuantized else {
            throw ValidationError("--dtype must be f32, f16 or bf16, got '\(dtype)' (quantize a folder with strata quantize)")
        }
        let p = try Synth.preset(preset)
        if routingSkew != nil && gguf == nil { throw ValidationError("--routing-skew is a --gguf option (a mixture written as GGUF)") }
        let t0 = now()
        var bar = ProgressBar()
        if let gguf {
            guard let scheme = QuantizeModel.Scheme(rawValue: gguf) else {
                throw ValidationError("--gguf must be one of \(QuantizeModel.Scheme.allCases.map(\.rawValue).joined(separator: ", ")), got '\(gguf)'")
            }
            do {
                try Synth.writeGGUF(preset: p, scheme: scheme, seed: seed, routingSkew: routingSkew, to: out, shouldStop: { Interrupt.requested }) { done, total in
                    bar.update(done, total)
                }
            } catch let e as Interrupted {
                bar.finish(); eprint("\(e)"); throw ExitCode(130)
            }
            bar.finish()
            let size = (try? FileIO.size(path: out)) ?? 0
            eprint("wrote \(out): \(p.name) (\(p.architecture.name), \(String(format: "%.2f", Double(p.parameterCount) / 1e9)) B parameters, \(scheme.rawValue), \(formatBytes(size))) in \(String(format: "%.1f", now() - t0)) s")
            return
        }
        do { try Synth.write(preset: p, dtype: dt, seed: seed, to: out, shouldStop: { Interrupt.requested }) { done, total in bar.update(done, total) } } catch let e as Interrupted {
            bar.finish(); eprint("\(e)"); throw ExitCode(130)
        }
        bar.finish()
        eprint("wrote \(out): \(p.name) (\(p.architecture.name), \(String(format: "%.1f", Double(p.parameterCount) / 1e6)) M parameters, \(dt.rawValue)) in \(String(format: "%.1f", now() - t0)) s")
    }
}

/// A progress bar on stderr: redrawn in place on a terminal (at most every 0.2 s), a line per
/// update otherwise.
struct ProgressBar {
    let t0 = now()
    var lastPrint = 0.0
    let tty = isatty(2) != 0

    mutating func update(_ done: Int, _ total: Int) {
        let t = now()
        if t - lastPrint < 0.2 && done < total { return }
        lastPrint = t
        let frac = Double(done) / Double(max(1, total))
        let bar = String(repeating: "#", count: Int(frac * 30)).padding(toLength: 30, withPad: ".", startingAt: 0)
        let line = String(format: "[%@] %5.1f%%  ", bar as NSString, frac * 100) + formatBytes(done) + " / " + formatBytes(total)
            + String(format: "  %.0f MB/s", Double(done) / max(1e-9, t - t0) / 1e6)
        FileHandle.standardError.write(Data(((tty ? "\r" : "") + line + (tty ? "" : "\n")).utf8))
    }

    func finish() { if tty { eprint("") } }
}
