import ArgumentParser
import Foundation
import Strata
import StrataMPI
import StrataMemory
import StrataPlanner

@main
struct StrataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata",
        abstract: "Run transformer language models on the CPU when memory is the wall.",
        version: StrataVersion.string,
        subcommands: [Generate.self, ChatCommand.self, ServeCommand.self, BenchServeCommand.self, ChatTemplateCommand.self, Logits.self, Tokenize.self, Detokenize.self, Inspect.self, Synthesize.self, QuantizeCommand.self,
                      PlanCommand.self, Profile.self, BenchModel.self, BenchBatch.self, BenchSuite.self, BenchLinear.self, BenchGrammar.self, Info.self, MatmulDemo.self]
    )

    static func main() {
        openBLASThreadsSleepWhenIdle()
        main(nil)
    }
}

/// OpenBLAS's idle threads spin on `sched_yield` for 2^28 cycles (about 80 ms here) after each
/// call before they sleep, on the cores Strata's own kernel threads need: in a bf16-product
/// prefill, where OpenBLAS only runs the attention, its spinning thread took 14% of the samples
/// (`perf`) and `OPENBLAS_THREAD_TIMEOUT=4` (sleep after 2^4 cycles) took TinyLlama bf16 pp512
/// from 217-221 to 247-268 tokens/s, with exact prefill and decode unchanged within noise
/// (docs/kernels.md). OpenBLAS reads the variable once, when it loads, so the CLI sets it and
/// runs itself again (same pid, arguments and environment otherwise); a value the user set is
/// kept, and if the exec fails the run goes on as it is.
func openBLASThreadsSleepWhenIdle() {
    guard getenv("OPENBLAS_THREAD_TIMEOUT") == nil else { return }
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
}

/// The sampling flags of `generate` and `chat`: unset ones take generation_config.json's values.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Sampling temperature; 0 is greedy (default: generation_config.json's, else 0.8).") var temperature: Float?
    @Option(name: .customLong("top-k"), help: "Sample from the k most likely tokens (0: all; default: generation_config.json's, else 0).") var topK: Int?
    @Option(name: .customLong("top-p"), help: "Sample from the smallest set reaching probability p (1: off; default: generation_config.json's, else 1).") var topP: Float?
    @Option(name: .customLong("min-p"), help: "Drop tokens below this fraction of the most likely one's probability (default: generation_config.json's, else 0).") var minP: Float?
    @Option(name: .customLong("repetition-penalty"), help: "Penalize tokens of the prompt and output, as transformers does (1: off; default: generation_config.json's).") var repetitionPenalty: Float?
    @Option(name: .customLong("presence-penalty"), help: "Subtract once from the logits of tokens already generated (OpenAI's; default 0).") var presencePenalty: Float = 0
    @Option(name: .customLong("frequency-penalty"), help: "Subtract per occurrence from the logits of tokens already generated (OpenAI's; default 0).") var frequencyPenalty: Float = 0
    @Option(help: "Seed for reproducible sampling.") var seed: UInt64?

    /// generation_config.json's defaults (temperature 0.8 without one), then the flags given.
    /// The sampling parameters: these flags, else generation_config.json's values, else the
    /// defaults (`fallback` tokens at most when neither `maxTokens` nor max_new_tokens is set).
    func parameters(_ folder: ModelFolder, maxTokens: Int?, fallback: Int) -> SamplingParameters {
        var p = SamplingParameters.defaults(from: folder.generation, base: SamplingParameters(temperature: 0.8))
        if let temperature { p.temperature = temperature }
        if let topK { p.topK = topK }
        if let topP { p.topP = topP }
        if let minP { p.minP = minP }
        if let repetitionPenalty { p.repetitionPenalty = repetitionPenalty }
        p.presencePenalty = presencePenalty
        p.frequencyPenalty = frequencyPenalty
        p.seed = seed
        p.maxTokens = maxTokens ?? folder.generation?.maxNewTokens ?? fallback
        return p
    }
}

struct ThreadOption: ParsableArguments {
    @Option(name: [.long, .customShort("t")], help: "Threads for OpenBLAS and Strata's loops (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: "Activations against quantized (GGUF) weights: q8 (fast: 8-bit per weight block with integer dot products as llama.cpp does for decode, bf16 products for prefill) or f32 (exact). Default q8 where the CPU has AVX2 or AVX-512 VNNI, else f32.")
    var activations: String?

    @Option(name: .customLong("prefill16"), help: "Linears of many rows over f16/bf16 weights (prompt processing, decode steps of 9 or more sequences): exact (weights widened to f32, sgemm; the default) or bf16 (activations rounded to bf16, AVX-512 BF16 products, as llama.cpp does for bf16 models; faster, not exact: docs/kernels.md gives the error).")
    var prefill16: String?

    func apply() throws {
        if let prefill16 {
            guard let mode = Kernels.Prefill16(rawValue: prefill16) else {
                throw ValidationError("--prefill16 must be exact or bf16, got '\(prefill16)'")
            }
            if mode == .bf16 && !Kernels.bf16GEMMSupported {
                throw ValidationError("--prefill16 bf16 needs AVX-512 BF16, which this CPU lacks")
            }
            Kernels.prefill16 = mode
        }
        if let activations {
            guard let act = Kernels.Activations(rawValue: activations) else {
                throw ValidationError("--activations must be q8 or f32, got '\(activations)'")
            }
            Kernels.activations = act
        } else {
            // where the 8-bit path has a SIMD kernel (AVX-512 VNNI, AVX2); elsewhere it runs its
            // portable definition, slower than the exact kernels
            Kernels.activations = Kernels.q8FastSupported ? .q8 : .f32
        }
        if let t = threads {
            guard t >= 1 else { throw ValidationError("--threads must be at least 1, got \(t)") }
            Threads.set(t)
        } else {
            // the cores shared by the ranks an MPI launcher started on this host
            Threads.set(max(1, ProcessInfo.processInfo.activeProcessorCount / MPIWorld.localRanks))
        }
    }
}

struct KVTypeOption: ParsableArguments {
    @Option(name: .customLong("kv-type"), help: "What the KV cache stores keys and values as: f32, f16, bf16 or q8_0 (llama.cpp's -ctk/-ctv; q8_0 needs a head size that is a multiple of 32). Default \(DType.kvDefault.rawValue). docs/kernels.md gives each type's logit error, memory and speed.")
    var kvType: String?

    func validate() throws {
        if let kvType, DType(rawValue: kvType.lowercased()).map({ DType.kvTypes.contains($0) }) != true {
            throw ValidationError("--kv-type must be one of \(DType.kvTypes.map(\.rawValue).joined(separator: ", ")), got '\(kvType)'")
        }
    }

    /// The type asked for (or the default), not yet checked against a model (its user does).
    var requested: DType { kvType.flatMap { DType(rawValue: $0.lowercased()) } ?? DType.kvDefault }

    /// The type asked for (or the default), checked against the model's heads.
    func type(_ spec: ModelSpec) throws -> DType {
        try DType.kvType(kvType ?? DType.kvDefault.rawValue, headDim: spec.headDim)
    }
}

/// Prints a JSON value on one line (machine-readable output).
func printJSON(_ obj: Any) throws {
    let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
    FileHandle.standardOutput.write(data)
    FileHandle.standardOutput.write(Data("\n".utf8))
}

func eprint(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

/// "1,2,3" -> [1, 2, 3]
/// `--dtype`'s value (nil when not given).
func parseDType(_ s: String?) throws -> DType? {
    try s.map { d in
        guard let x = DType(rawValue: d) else {
            throw ValidationError("--dtype must be one of \(DType.allCases.map(\.rawValue).joined(separator: ", ")), got '\(d)'")
        }
        return x
    }
}

/// `--weights`: tiered or mmap.
func parseWeights(_ s: String) throws -> Placement.Weights {
    guard let w = Placement.Weights(rawValue: s) else { throw ValidationError("--weights must be tiered or mmap, got '\(s)'") }
    return w
}

/// A numeric flag within what the machine and the model can hold (checked before any size is
/// computed from it).
func checkFlag(_ v: Int, _ range: ClosedRange<Int>, _ flag: String) throws {
    if !range.contains(v) { throw ValidationError("\(flag) must be in \(range.lowerBound)...\(range.upperBound), got \(v)") }
}

func parseIDs(_ s: String) throws -> [Int] {
    let parts = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    return try parts.map {
        guard let v = Int($0) else { throw ValidationError("--ids: '\($0)' is not an integer") }
        return v
    }
}

/// A list flag's value in either form: `--batches 1,4,16` or `--batches 1 4 16` (or repeated); every
/// list flag reads it so (`values` of all of them, in order).
struct IntList: ExpressibleByArgument, CustomStringConvertible {
    var values: [Int]
    init(_ values: [Int]) { self.values = values }
    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let ints = parts.map { Int($0) }
        guard !parts.isEmpty, ints.allSatisfy({ $0 != nil }) else { return nil }
        values = ints.map { $0! }
    }
    var description: String { values.map(String.init).joined(separator: ",") }
    var defaultValueDescription: String { description }
    /// The integers of every occurrence, in order.
    static func all(_ lists: [IntList]) -> [Int] { lists.flatMap(\.values) }
}
