import Foundation
import StrataFormats
import StrataTensor

/// Random-weight model folders of real shapes, for benchmarks and demos (no hub access needed):
/// `config.json`, `model.safetensors` (written at disk speed, in file order), a byte-level BPE
/// `tokenizer.json` whose vocabulary fills the model's, and `generation_config.json`.
public enum Synth {
    public struct Preset: Sendable {
        public let name: String
        public let architecture: any Architecture.Type
        public let hidden: Int, intermediate: Int, layers: Int, heads: Int, kvHeads: Int, vocab: Int
        public let maxPositions: Int
        public let tied: Bool
        public let ropeTheta: Double
        public let rmsEps: Double
        /// extra config.json fields (rope_scaling, head_dim, ...), as a JSON object
        public let extra: String

        /// The architecture's tensors and config.json, in the shape of this preset.
        var shape: SynthShape {
            SynthShape(hidden: hidden, intermediate: intermediate, layers: layers, heads: heads, kvHeads: kvHeads, vocab: vocab,
                       maxPositions: maxPositions, tied: tied, ropeTheta: ropeTheta, rmsEps: rmsEps, extra: extra)
        }

        /// Parameters, counted from the shapes.
        public var parameterCount: Int { tensors(dtype: .f32).reduce(0) { $0 + $1.shape.reduce(1, *) } }

        func tensors(dtype: DType) -> [SafetensorsWriter.Spec] {
            architecture.synthTensors(shape).map { SafetensorsWriter.Spec(name: $0.name, dtype: dtype, shape: $0.shape) }
        }

        var config: [String: Any] { architecture.synthConfig(shape) }
    }

    /// Shapes from the models' public config.json files.
    public static let presets: [Preset] = [
        Preset(name: "tiny", architecture: LlamaArchitecture.self, hidden: 256, intermediate: 768, layers: 4, heads: 8, kvHeads: 4,
               vocab: 4096, maxPositions: 2048, tied: false, ropeTheta: 10000, rmsEps: 1e-5, extra: "{}"),
        Preset(name: "smollm-135m", architecture: LlamaArchitecture.self, hidden: 576, intermediate: 1536, layers: 30, heads: 9, kvHeads: 3,
               vocab: 49152, maxPositions: 2048, tied: true, ropeTheta: 10000, rmsEps: 1e-5, extra: "{}"),
        Preset(name: "gpt2-124m", architecture: GPT2Architecture.self, hidden: 768, intermediate: 3072, layers: 12, heads: 12, kvHeads: 12,
               vocab: 50257, maxPositions: 1024, tied: true, ropeTheta: 0, rmsEps: 1e-5, extra: "{}"),
        Preset(name: "qwen2.5-0.5b", architecture: Qwen2Architecture.self, hidden: 896, intermediate: 4864, layers: 24, heads: 14, kvHeads: 2,
               vocab: 151936, maxPositions: 32768, tied: true, ropeTheta: 1_000_000, rmsEps: 1e-6, extra: "{}"),
        Preset(name: "qwen3-0.6b", architecture: Qwen3Architecture.self, hidden: 1024, intermediate: 3072, layers: 28, heads: 16, kvHeads: 8,
               vocab: 151936, maxPositions: 40960, tied: true, ropeTheta: 1_000_000, rmsEps: 1e-6, extra: #"{"head_dim": 128}"#),
        Preset(name: "phi-3-mini", architecture: Phi3Architecture.self, hidden: 3072, intermediate: 8192, layers: 32, heads: 32, kvHeads: 32,
               vocab: 32064, maxPositions: 4096, tied: false, ropeTheta: 10000, rmsEps: 1e-5, extra: "{}"),
        Preset(name: "gemma-2-2b", architecture: Gemma2Architecture.self, hidden: 2304, intermediate: 9216, layers: 26, heads: 8, kvHeads: 4,
               vocab: 256000, maxPositions: 8192, tied: true, ropeTheta: 10000, rmsEps: 1e-6,
               extra: #"{"head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 4096, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}"#),
        Preset(name: "gemma-3-1b", architecture: Gemma3Architecture.self, hidden: 1152, intermediate: 6912, layers: 26, heads: 4, kvHeads: 1,
               vocab: 262144, maxPositions: 32768, tied: true, ropeTheta: 1_000_000, rmsEps: 1e-6,
               extra: #"{"head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 512}"#),
        Preset(name: "gemma-3-4b", architecture: Gemma3MultimodalArchitecture.self, hidden: 2560, intermediate: 10240, layers: 34, heads: 8, kvHeads: 4,
               vocab: 262208, maxPositions: 131072, tied: true, ropeTheta: 1_000_000, rmsEps: 1e-6,
               extra: #"{"head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 1024, "rope_scaling": {"rope_type": "linear", "factor": 8.0}}"#),
        Preset(name: "tinyllama-1.1b", architecture: LlamaArchitecture.self, hidden: 2048, intermediate: 5632, layers: 22, heads: 32, kvHeads: 4,
               vocab: 32000, maxPositions: 2048, tied: false, ropeTheta: 10000, rmsEps: 1e-5, extra: "{}"),
        Preset(name: "llama-3.2-1b", architecture: LlamaArchitecture.self, hidden: 2048, intermediate: 8192, layers: 16, heads: 32, kvHeads: 8,
               vocab: 128256, maxPositions: 131072, tied: true, ropeTheta: 500000, rmsEps: 1e-5,
               extra: #"{"head_dim": 64, "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#),
        // mixtures of experts (written directly as a quantized GGUF: `strata synth --gguf q4_k_m`)
        Preset(name: "tiny-moe", architecture: Qwen3MoeArchitecture.self, hidden: 256, intermediate: 768, layers: 4, heads: 8, kvHeads: 4,
               vocab: 4096, maxPositions: 2048, tied: false, ropeTheta: 1_000_000, rmsEps: 1e-6,
               extra: #"{"head_dim": 32, "num_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 256, "norm_topk_prob": true}"#),
        Preset(name: "qwen3-30b-a3b", architecture: Qwen3MoeArchitecture.self, hidden: 2048, intermediate: 6144, layers: 48, heads: 32, kvHeads: 4,
               vocab: 151936, maxPositions: 40960, tied: false, ropeTheta: 1_000_000, rmsEps: 1e-6,
               extra: #"{"head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768, "norm_topk_prob": true}"#),
        Preset(name: "mixtral-8x7b", architecture: MixtralArchitecture.self, hidden: 4096, intermediate: 14336, layers: 32, heads: 32, kvHeads: 8,
               vocab: 32000, maxPositions: 32768, tied: false, ropeTheta: 1_000_000, rmsEps: 1e-5,
               extra: #"{"num_local_experts": 8, "num_experts_per_tok": 2}"#),
        Preset(name: "tiny-gpt-oss", architecture: GptOssArchitecture.self, hidden: 256, intermediate: 256, layers: 4, heads: 8, kvHeads: 4,
               vocab: 4096, maxPositions: 4096, tied: false, ropeTheta: 150_000, rmsEps: 1e-5,
               extra: #"{"head_dim": 32, "num_local_experts": 16, "num_experts_per_tok": 4, "sliding_window": 64}"#),
        Preset(name: "gpt-oss-20b", architecture: GptOssArchitecture.self, hidden: 2880, intermediate: 2880, layers: 24, heads: 64, kvHeads: 8,
               vocab: 201088, maxPositions: 131072, tied: false, ropeTheta: 150_000, rmsEps: 1e-5,
               extra: #"{"head_dim": 64, "num_local_experts": 32, "num_experts_per_tok": 4, "sliding_window": 128}"#),
        Preset(name: "llama-2-7b", architecture: LlamaArchitecture.self, hidden: 4096, intermediate: 11008, layers: 32, heads: 32, kvHeads: 32,
               vocab: 32000, maxPositions: 4096, tied: false, ropeTheta: 10000, rmsEps: 1e-5, extra: "{}"),
    ]

    public enum SynthError: Error, CustomStringConvertible {
        case unknownPreset(String)
        public var description: String {
            switch self {
            case let .unknownPreset(n): return "unknown preset '\(n)' (presets: \(Synth.presets.map { $0.name }.joined(separator: ", ")))"
            }
        }
    }

    public static func preset(_ name: String) throws -> Preset {
        guard let p = presets.first(where: { $0.name == name }) else { throw SynthError.unknownPreset(name) }
        return p
    }

    /// The files of a synthesized folder, in the order they are moved into place (config.json
    /// last: it is what makes a folder a model).
    static let files = ["model.safetensors", "tokenizer.json", "generation_config.json", "config.json"]

    /// Writes the folder whole or not at all: everything goes to `<directory>.partial` first, then
    /// each file is renamed into `directory`; an error (a full disk) or a stop request
    /// (`shouldStop` true between chunks; the CLI wires Ctrl-C there) removes the staging folder
    /// and leaves `directory` as it was. Throws `Interrupted` when stopped. `progress(done, total)`
    /// is called as bytes are written.
    public static func write(preset: Preset, dtype: DType, seed: UInt64, to directory: String, shouldStop: () -> Bool = { false },
                             progress: (Int, Int) -> Void = { _, _ in }) throws {
        let fm = FileManager.default
        let staging = directory + ".partial"
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: directory, isDirectory: &isDir), !isDir.boolValue { throw FileError.notRegular(path: directory) }
        try? fm.removeItem(atPath: staging)
        try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
        Interrupt.onForcedExit { try? FileManager.default.removeItem(atPath: staging) }
        do {
            try writeFiles(preset: preset, dtype: dtype, seed: seed, to: staging, shouldStop: shouldStop, progress: progress)
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for f in files {
                try FileIO.rename((staging as NSString).appendingPathComponent(f), to: (directory as NSString).appendingPathComponent(f))
            }
            try? fm.removeItem(atPath: staging)
        } catch {
            try? fm.removeItem(atPath: staging)
            throw error
        }
    }

    static func writeFiles(preset: Preset, dtype: DType, seed: UInt64, to directory: String, shouldStop: () -> Bool,
                           progress: (Int, Int) -> Void) throws {
        func writeJSON(_ obj: Any, _ name: String) throws {
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
            try FileIO.writeAtomically((directory as NSString).appendingPathComponent(name), data)
        }
        var cfg = preset.config
        cfg["torch_dtype"] = ["f32": "float32", "f16": "float16", "bf16": "bfloat16"][dtype.rawValue]!
        try writeJSON(cfg, "config.json")
        try writeJSON(["bos_token_id": preset.vocab - 1, "eos_token_id": preset.vocab - 1], "generation_config.json")
        try writeJSON(tokenizerJSON(vocab: preset.vocab), "tokenizer.json")

        let specs = preset.tensors(dtype: dtype)
        let path = (directory as NSString).appendingPathComponent("model.safetensors")
        let writer = try SafetensorsWriter(path: path, tensors: specs)
        // Two buffers: one is filled with random values while the other is written, so the
        // file is written at disk speed (the generator is faster than the disk).
        let chunk = 8 << 20  // elements per write
        let bufs = [Tensor(zeros: [chunk]), Tensor(zeros: [chunk])]
        let outs = [Tensor(zeros: [chunk], dtype: dtype), Tensor(zeros: [chunk], dtype: dtype)]
        let writeQueue = DispatchQueue(label: "strata.synth.write")
        let free = DispatchSemaphore(value: 2)
        let errorBox = UncheckedSendable(NSLock())
        nonisolated(unsafe) var writeError: Error? = nil
        nonisolated(unsafe) var written = 0
        let writerBox = UncheckedSendable(writer)
        var which = 0
        let dataBytes = specs.reduce(0) { $0 + $1.byteCount }
        for (i, s) in specs.enumerated() {
            let n = s.shape.reduce(1, *)
            let isNorm = s.shape.count == 1 && (s.name.contains("norm") || s.name.contains("ln_")) && s.name.hasSuffix("weight")
            // uniform in [-a, a] with a = 1/sqrt(in features): activations stay O(1) through the layers
            let fanIn = s.shape.count == 2 ? (s.name.contains("c_") ? s.shape[0] : s.shape[1]) : 1
            let a = Float(1 / Double(fanIn).squareRoot())
            var rng = Xoshiro256(seed: seed &+ UInt64(i) &* 0x9E37_79B9)
            var off = 0
            while off < n {
                let m = min(chunk, n - off)
                free.wait()
                errorBox.value.lock(); let failed = writeError; errorBox.value.unlock()
                if failed != nil || shouldStop() {
                    // give the slot back and let the queued write end: libdispatch traps on a
                    // semaphore freed below its initial value
                    free.signal()
                    withExtendedLifetime((bufs, outs)) { writeQueue.sync {} }
                    writer.abandon()
                    throw failed ?? Interrupted()
                }
                let p = bufs[which].f32
                if isNorm {
                    for j in 0..<m { p[j] = 1 }
                } else if s.shape.count == 1 {
                    for j in 0..<m { p[j] = 0.02 * (Float(rng.next() >> 40) * 0x1.0p-23 - 1) }
                } else {
                    let box = UncheckedSendable(p)
                    let seeds = (0..<max(1, Threads.count)).map { _ in rng.next() }
                    Threads.parallelFor(m, minChunk: 1 << 16) { r in
                        var g = Xoshiro256(seed: seeds[r.lowerBound * seeds.count / m])
                        for j in r { box.value[j] = a * (Float(g.next() >> 40) * 0x1.0p-23 - 1) }
                    }
                }
                let src: UnsafeRawPointer
                switch dtype {
                case .f32: src = UnsafeRawPointer(p)
                case .f16:
                    HalfConversion.f32ToF16(p, outs[which].rawPointer.assumingMemoryBound(to: UInt16.self), count: m)
                    src = UnsafeRawPointer(outs[which].rawPointer)
                case .bf16:
                    HalfConversion.f32ToBF16(p, outs[which].rawPointer.assumingMemoryBound(to: UInt16.self), count: m)
                    src = UnsafeRawPointer(outs[which].rawPointer)
                default:
                    throw TensorError.unsupportedDType(context: "synthesized safetensors (quantize the folder with strata quantize)", dtype: dtype.rawValue)
                }
                let bytes = m * dtype.byteSize
                let srcBox = UncheckedSendable(src)
                writeQueue.async {
                    do { try writerBox.value.write(srcBox.value, count: bytes) } catch {
                        errorBox.value.lock(); writeError = error; errorBox.value.unlock()
                    }
                    errorBox.value.lock(); written += bytes; errorBox.value.unlock()
                    free.signal()
                }
                which ^= 1
                off += m
                errorBox.value.lock(); let done = written; errorBox.value.unlock()
                progress(done, dataBytes)
            }
        }
        // the buffers must outlive the queued writes (Swift may end a lifetime at its last use)
        withExtendedLifetime((bufs, outs)) { writeQueue.sync {} }
        if let writeError { writer.abandon(); throw writeError }
        progress(dataBytes, dataBytes)
        try writer.finish()
    }

    /// A byte-level BPE tokenizer.json with exactly `vocab` ids: 256 byte symbols, merged tokens
    /// built from letters (each merge joins an existing token and one letter), and
    /// `<|endoftext|>` as the last id.
    public static func tokenizerJSON(vocab: Int) -> [String: Any] {
        precondition(vocab > 300, "synthetic tokenizer needs more than 300 ids")
        let alphabet = ByteLevelAlphabetPublic.byteToChar
        var tokens: [String] = alphabet.map { String($0) }
        var seen = Set(tokens)
        var merges: [String] = []
        let letters = Array("etaoinshrdlucmfwypvbgkqjxz").map(String.init)
        let starts = ["\u{0120}"] + letters  // Ġ (space) and letters start words
        var frontier = starts
        let target = vocab - 1
        outer: while tokens.count < target {
            var nextFrontier: [String] = []
            for t in frontier {
                for l in letters {
                    let n = t + l
                    if seen.contains(n) { continue }
                    seen.insert(n); tokens.append(n); merges.append(t + " " + l); nextFrontier.append(n)
                    if tokens.count >= target { break outer }
                }
            }
            frontier = nextFrontier
        }
        var v: [String: Int] = [:]
        for (i, t) in tokens.enumerated() { v[t] = i }
        return [
            "version": "1.0",
            "added_tokens": [["id": vocab - 1, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": false, "special": true]],
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true],
            "post_processor": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "fuse_unk": false, "byte_fallback": false,
                      "ignore_merges": false, "vocab": v, "merges": merges] as [String: Any],
        ]
    }
}
