import ArgumentParser
import Foundation
import Strata

struct QuantizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Write a safetensors model folder as a GGUF file of quantized blocks (llama.cpp's format and llama-quantize's schemes).")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder (config.json, safetensors, tokenizer.json).") var model: String
    @Option(help: "Scheme: \(QuantizeModel.Scheme.allCases.map(\.rawValue).joined(separator: ", ")).") var type: String
    @Option(help: "Output .gguf file.") var out: String
    @OptionGroup var threads: ThreadOption

    func run() throws {
        try threads.apply()
        Interrupt.install()
        guard let scheme = QuantizeModel.Scheme(rawValue: type) else {
            throw ValidationError("--type must be one of \(QuantizeModel.Scheme.allCases.map(\.rawValue).joined(separator: ", ")), got '\(type)'")
        }
        let folder = try ModelFolder(path: model)
        let t0 = now()
        var bar = ProgressBar()
        let s: QuantizeModel.Summary
        do { s = try QuantizeModel.run(folder: folder, scheme: scheme, out: out, shouldStop: { Interrupt.requested }) { done, total in bar.update(done, total) } } catch let e as Interrupted {
            bar.finish(); eprint("\(e)"); throw ExitCode(130)
        }
        bar.finish()
        let types = s.byType.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \(formatBytes($0.value))" }.joined(separator: ", ")
        eprint("wrote \(out): \(s.tensors) tensors, \(formatBytes(s.bytes)) (\(types)) in \(String(format: "%.1f", now() - t0)) s")
    }
}
