import ArgumentParser
import Foundation
import Strata
import StrataMPI

/// `strata generate` and `strata serve` under an MPI launcher (`mpirun -np N strata ...`, `srun`):
/// the model's layers split over the ranks as pipeline stages (StrataMPI's `MPIPipeline`). Rank 0
/// runs the command as on one host (tokenizer, scheduler, API, output); every other rank loads its
/// layers under its own `--ram-budget` and runs them for each pass until rank 0 ends. A rank that
/// fails prints why, naming itself and its host, and ends the whole job (`MPI_Abort`): no rank is
/// left waiting. docs/distributed.md says more.
/// The options of a run under `mpirun` (ignored elsewhere).
struct DistributedOption: ParsableArguments {
    @Option(name: .customLong("mpi-experts"), help: "Under mpirun, a mixture's routed experts: shard (spread over every rank, in RAM; the default) or stage (each rank holds its layers' experts).")
    var mpiExperts = "shard"

    func validate() throws {
        guard ["shard", "stage"].contains(mpiExperts) else { throw ValidationError("--mpi-experts must be shard or stage, got '\(mpiExperts)'") }
    }
}

enum Distributed {
    /// Runs `body` on rank 0 of the job this process belongs to, and a pipeline stage on the others.
    static func run(model: String, budget: Int?, options: DistributedOption, body: () throws -> Void) throws {
        let world: MPIWorld
        do { world = try MPIWorld() } catch {
            eprint("strata: cannot start MPI: \(error)")
            throw ExitCode(1)
        }
        if world.size == 1 {
            defer { world.finalize() }
            return try body()
        }
        let pipeline = MPIPipeline(world: world, budget: budget, shardExperts: options.mpiExperts == "shard")
        Pipelines.current = pipeline
        do {
            if world.rank == 0 {
                try body()
                try pipeline.shutdown()
            } else {
                // rank 0 stops the job (its signals reach every rank through the launcher)
                signal(SIGINT, SIG_IGN)
                signal(SIGTERM, SIG_IGN)
                signal(SIGHUP, SIG_IGN)
                let folder = try ModelFolder(path: model)
                // the workload, KV pool and weight mode come from rank 0 (`Pipeline.agree`)
                let run = try TieredRun(folder: folder, budget: budget, workload: Workload(batch: 1, promptTokens: 1, outputTokens: 1))
                defer { run.shutdown() }
                try pipeline.serveStage(model: run.loaded.model, paged: run.engine.kv, layers: pipeline.stages[world.rank])
            }
        } catch {
            let code: Int32 = (error as? ExitCode)?.rawValue ?? 1
            if !(error is ExitCode) { eprint("strata: \(world.name(world.rank)) of \(world.size): \(error)") }
            world.abort(code == 0 ? 1 : code)
        }
        world.finalize()
    }
}

extension MPIPipeline {
    /// "layers 0..<2 on rank 0, 2..<3 on rank 1; experts 0..<4 on rank 0, 4..<8 on rank 1"
    var splitDescription: String {
        func ranges(_ r: [Range<Int>]) -> String { r.enumerated().map { "\($1.lowerBound)..<\($1.upperBound) on rank \($0)" }.joined(separator: ", ") }
        return "\(size) ranks, layers \(ranges(stages))" + (expertRanges.isEmpty ? "" : "; experts of every layer \(ranges(expertRanges))")
    }
}
