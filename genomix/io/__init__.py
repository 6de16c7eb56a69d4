"""Reading and writing: records from FASTA/FASTQ/tables and genomes, where they come from (`sources`), and where
results go (`files`: outputs that never overwrite an input, `formats`, `writers`, `tracks`)."""
