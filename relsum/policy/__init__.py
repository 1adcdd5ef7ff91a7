"""The summarizer policy, shared by training and serving (importing neither): loading (HF folder, GGUF
conversion, tiny build), dtype, the prompt, generation with the shared prefill, the served-summary
clean-up and the summary reward."""
